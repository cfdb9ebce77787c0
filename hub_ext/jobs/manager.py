"""The hub's job manager: submit, queue, start, cancel, time out and record the end.

A job starts the way any server does, through the hub's own REST API (``POST
/hub/api/users/NAME/servers/job-<id>`` with the job's resources as ``user_options``) with
the token of the ``dsplatform-jobs`` service, so the spawn goes through JupyterHub's own
path and the spawner's admission (:meth:`hub_ext.spawners.base.ProfileSpawner.admit`). The
spawner starts a job server only for a record in state ``starting`` of that user, so no other
route can start one. Before a job is recorded, :func:`~hub_ext.admission.admit.preview`
answers at once: over quota now -> the same refusal as for a server (or the queue with
``wait``); never admissible (over a limit even with nothing held) -> refused either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from jupyterhub import orm
from sqlalchemy.orm import Session

from hub_ext.admission.accounting import GpuAccounting, utcnow
from hub_ext.admission.admit import Applicant, preview
from hub_ext.admission.policy import Policy, load_policy
from hub_ext.admission.reservations import Ledger
from hub_ext.jobs import records as R
from hub_ext.jobs.queue import JobQueue, queue_of
from hub_ext.jobs.records import JobRecord, JobStore
from hub_ext.jobs.settings import NotebookJobs
from hub_ext.jobs.spec import JobSpec
from hub_ext.monitoring.hub_metrics import JOB_DECISIONS

log = logging.getLogger("JupyterHub.dsplatform.jobs")  # in the hub's log
SERVICE = "dsplatform-jobs"
SERVICE_SCOPES = ["list:users", "read:users", "read:servers", "servers"]
TOKEN = secrets.token_hex(32)  # this hub process's token for its own API (never stored)
DEADLINE_EVERY = 5.0  # seconds between checks of running jobs' time limits


class JobError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _app() -> Any:
    from jupyterhub.app import JupyterHub

    return JupyterHub.instance()


class JobManager:
    _shared: ClassVar[JobManager | None] = None

    def __init__(self) -> None:
        self.queue = JobQueue()
        self._loaded = False
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def shared(cls) -> JobManager:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    # --- context -----------------------------------------------------------------------
    @staticmethod
    def settings() -> NotebookJobs:
        return NotebookJobs(config=_app().config)

    @staticmethod
    def policy() -> Policy:
        app = _app()
        return load_policy(app.config, app.spawner_class)

    def load(self, db: Session) -> JobStore:
        """The store; on first use, the queue from the records (after a hub restart)."""
        store = JobStore(db)
        if not self._loaded:
            self._loaded = True
            for record in store.in_states(R.QUEUED, R.STARTING):
                if record.state == R.STARTING:  # its spawn did not outlive the hub
                    server = _server_of(db, record)
                    if server is not None and server.server is not None:
                        continue
                    store.set_state(record.id, R.QUEUED)
                self.queue.push(record.queue, record.id)
            self._schedule_deadlines()
            if len(self.queue):
                self.kick()
        return store

    def _schedule_deadlines(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: the next call does it
            loop = asyncio.get_running_loop()
            if self._timer is None:
                self._timer = loop.call_later(DEADLINE_EVERY, self._deadlines)

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- submit ------------------------------------------------------------------------
    async def submit(
        self, db: Session, user: orm.User, spec: JobSpec
    ) -> tuple[JobRecord, int | None]:
        store = self.load(db)
        settings, policy = self.settings(), self.policy()
        applicant = _applicant(user)
        hours = _once(GpuAccounting(db).hours_this_week)
        with JOB_DECISIONS.time():  # the decision itself, as for spawns (no writes)
            never = preview(spec.options, applicant, policy, Ledger(), hours, kind="job")
            queue = queue_of(user.name, applicant.groups, tuple(policy.quotas.group_pools))
            now = None
            if never is None:
                now = preview(spec.options, applicant, policy, Ledger.shared(), hours,
                              kind="job")  # fmt: skip
            behind = self.queue.waiting(queue) > 0
        if never is not None:  # refused with nothing held: waiting would not help
            raise JobError(never.status_code, never.message)
        if now is not None or (spec.wait and behind):
            if not spec.wait:
                assert now is not None
                raise JobError(now.status_code, now.message)
            waiting = store.count(user.name, R.QUEUED)
            if waiting >= settings.max_waiting:
                raise JobError(429, f"You have {waiting} jobs waiting, the most allowed "
                               "(c.NotebookJobs.max_waiting); cancel some or wait")  # fmt: skip
            record = store.add(uuid.uuid4().hex[:12], user.name, queue, spec, R.QUEUED)
            self.queue.push(queue, record.id)
            log.info("dsplatform: job %s of %s waits in %s", record.id, user.name, queue)
            return record, self.queue.position(record.id)
        record = store.add(uuid.uuid4().hex[:12], user.name, queue, spec, R.STARTING)
        status, message = await self._start(store, record, wait=spec.wait)
        if record.id in self.queue:  # taken meanwhile by a concurrent request: it waits
            self.kick()
            return store.get(record.id) or record, self.queue.position(record.id)
        if status >= 400:
            raise JobError(status, message)
        return store.get(record.id) or record, None

    # --- the queue ---------------------------------------------------------------------
    def kick(self) -> None:
        """Try the heads of the queues soon (resources were released, a job was queued)."""
        if not len(self.queue):
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._spawn_task(self._pass())

    async def _pass(self) -> None:
        async with self._lock:
            app = _app()
            store = JobStore(app.db)
            policy = self.policy()
            for job_id in self.queue.heads():
                record = store.get(job_id)
                if record is None or record.state != R.QUEUED:
                    self.queue.remove(job_id)
                    continue
                user = orm.User.find(app.db, record.user)
                if user is None:
                    self.queue.remove(job_id)
                    store.set_state(job_id, R.FAILED, message="The user no longer exists")
                    continue
                applicant = _applicant(user)
                hours = GpuAccounting(app.db).hours_this_week
                if preview(record.spec.options, applicant, policy, Ledger.shared(), hours,
                           kind="job") is not None:  # fmt: skip
                    continue  # the head does not fit yet: its queue waits
                self.queue.remove(job_id)
                store.set_state(job_id, R.STARTING, only_if=(R.QUEUED,))
                await self._start(store, record, wait=True, front=True)

    async def _start(self, store: JobStore, record: JobRecord, *, wait: bool,
                     front: bool = False) -> tuple[int, str]:  # fmt: skip
        """Spawn a ``starting`` job's server. Refused because the resources were taken
        meanwhile (403/503) and ``wait``: back in its queue (at its ``front`` when it was
        the head); refused otherwise: failed. Either way its server entry goes."""
        status, message = await self._spawn(record)
        if status < 400:
            return status, message
        self._spawn_task(self._remove_server(record))
        if wait and status in (403, 503):
            store.set_state(record.id, R.QUEUED, only_if=(R.STARTING,))
            self.queue.push(record.queue, record.id, front=front)
        else:
            store.set_state(record.id, R.FAILED, finished=utcnow(), message=message)
        return status, message

    def position(self, job_id: str) -> int | None:
        return self.queue.position(job_id)

    # --- the spawner's side --------------------------------------------------------------
    def expected(self, db: Session, user: str, job_id: str) -> JobRecord | None:
        """The record a job server may start for (state starting, this user), else None."""
        record = self.load(db).get(job_id)
        if record is None or record.user != user or record.state != R.STARTING:
            return None
        return record

    def record(self, db: Session, job_id: str) -> JobRecord | None:
        return self.load(db).get(job_id)

    def running(self, db: Session, job_id: str) -> None:
        self.load(db).set_state(job_id, R.RUNNING, only_if=(R.STARTING,), started=utcnow())

    def reported(self, db: Session, record: JobRecord, exit_code: int) -> None:
        """The runner's own exit code (kept for a hub that restarted and lost the process)."""
        JobStore(db).set_state(record.id, record.state, only_if=(R.RUNNING,),
                               exit_code=int(exit_code))  # fmt: skip

    def finished(self, db: Session, job_id: str, exit_code: int | None) -> None:
        """The job's server stopped: succeeded or failed by its exit code (``None`` when the
        hub lost the process in a restart: then the code the runner reported); cancelled and
        timed-out jobs keep that state. Then the queue may move."""
        store = self.load(db)
        record = store.get(job_id)
        if record is not None and record.state in (R.STARTING, R.RUNNING):
            code = exit_code if exit_code is not None else record.exit_code
            state = R.SUCCEEDED if code == 0 else R.FAILED
            message = "" if code == 0 else (
                f"The notebook failed (exit code {code}); see {record.output_dir}/log.txt"
                if code is not None else "The job stopped without an exit code")  # fmt: skip
            store.set_state(job_id, state, only_if=(R.STARTING, R.RUNNING), finished=utcnow(),
                            exit_code=code, message=message)  # fmt: skip
        if record is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop()
                self._spawn_task(self._remove_server(record, delay=0.5))
        self.kick()

    # --- cancel and time limits ----------------------------------------------------------
    async def cancel(self, db: Session, record: JobRecord, state: str = R.CANCELLED,
                     message: str = "Cancelled") -> JobRecord:  # fmt: skip
        store = self.load(db)
        if record.state == R.QUEUED and self.queue.remove(record.id):
            store.set_state(record.id, state, only_if=(R.QUEUED,), finished=utcnow(),
                            message=message)  # fmt: skip
        elif record.state in (R.STARTING, R.RUNNING):
            store.set_state(record.id, state, only_if=(R.STARTING, R.RUNNING),
                            finished=utcnow(), message=message)  # fmt: skip
            await self._remove_server(record)
        self.kick()
        return store.get(record.id) or record

    def _deadlines(self) -> None:
        self._timer = None
        try:
            app = _app()
            store = JobStore(app.db)
            limit = self.settings().max_runtime
            now = utcnow()
            for record in store.in_states(R.RUNNING):
                allowed = record.spec.timeout or limit
                if record.started and (now - record.started).total_seconds() > allowed:
                    log.info("dsplatform: job %s ran past %s s", record.id, allowed)
                    why = f"Stopped after {allowed} s (its time limit)"
                    self._spawn_task(self.cancel(app.db, record, R.TIMED_OUT, why))
        finally:
            self._schedule_deadlines()

    # --- the hub's API -------------------------------------------------------------------
    async def _hub(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        url = _app().hub.api_url.rstrip("/") + path
        try:
            response = await AsyncHTTPClient().fetch(
                url, method=method, headers={"Authorization": f"token {TOKEN}"},
                body=json.dumps(body) if body is not None else None,
                allow_nonstandard_methods=True, request_timeout=120,
            )  # fmt: skip
            return response.code, response.body.decode(errors="replace")
        except HTTPClientError as e:
            text = e.response.body.decode(errors="replace") if e.response else str(e)
            with contextlib.suppress(ValueError, AttributeError):
                text = json.loads(text).get("message", text)
            return e.code, text

    async def _spawn(self, record: JobRecord) -> tuple[int, str]:
        options = {**record.spec.options, "job": {"id": record.id}}
        status, text = await self._hub("POST", f"/users/{record.user}/servers/{record.server}",
                                       options)  # fmt: skip
        if status >= 400:
            log.info("dsplatform: job %s of %s not started: %s %s", record.id, record.user,
                     status, text[:300])  # fmt: skip
        return status, text

    async def _remove_server(self, record: JobRecord, delay: float = 0.0) -> None:
        """Stop the job's server (if it runs) and remove its entry from the user's servers."""
        if delay:
            await asyncio.sleep(delay)
        path = f"/users/{record.user}/servers/{record.server}"
        for _ in range(120):
            status, _text = await self._hub("DELETE", path, {"remove": True})
            if status in (202, 204, 404):
                if status == 202:  # stopping: remove once stopped
                    await asyncio.sleep(0.5)
                    continue
                return
            await asyncio.sleep(0.5)  # e.g. 400 while its spawn is pending


def _once(hours: Callable[[str], float]) -> Callable[[str], float]:
    """``hours`` asked at most once per user (both previews of a submission ask it)."""
    known: dict[str, float] = {}

    def ask(user: str) -> float:
        if user not in known:
            known[user] = hours(user)
        return known[user]

    return ask


def _applicant(user: orm.User) -> Applicant:
    return Applicant(user.name, "", tuple(sorted(g.name for g in user.groups)))


def _server_of(db: Session, record: JobRecord) -> Any:
    user = orm.User.find(db, record.user)
    return user.orm_spawners.get(record.server) if user is not None else None
