"""``/hub/api/dsplatform/jobs``: notebook jobs (:mod:`hub_ext.jobs`).

* ``POST`` (``{"notebook", "profile", "cpu", "memory", "gpus", "parameters", "wait",
  "commit", "timeout"}``): 201 with the job (``running``/``starting``), 202 when it waits
  (``queued``, with its ``position``), or the admission's refusal: 403/503 with the numbers,
  400 for invalid requests, 429 for too many waiting.
* ``GET``: the caller's jobs; ``?all=1``: everyone's, with the queues (``read:servers`` on
  everyone, the admin role).
* ``GET``/``DELETE`` ``…/jobs/ID``: one job; cancel it (its process tree is stopped).
* ``POST …/jobs/ID/result``: the job's runner reports its exit code (the job's user only).

Every route needs ``custom:dsplatform:jobs`` (every user's role and sandbox token has it);
another user's job needs ``read:servers`` (reading) or ``delete:servers`` (cancelling) for
that user. Domain errors become HTTP errors in :func:`_fail` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from hub_ext.api import JOBS_SCOPE
from hub_ext.api.callers import per_user_caller
from hub_ext.jobs.manager import JobError, JobManager
from hub_ext.jobs.records import JobRecord
from hub_ext.jobs.spec import JobRequestError, parse_spec


@contextmanager
def _fail() -> Iterator[None]:
    """The one place where job errors become HTTP answers."""
    try:
        yield
    except JobRequestError as e:
        raise web.HTTPError(400, str(e)) from None
    except JobError as e:
        raise web.HTTPError(e.status, e.message) from None


class _JobsHandler(APIHandler):
    def caller(self) -> Any:
        """The calling user, holding the jobs scope (their own jobs)."""
        caller = per_user_caller(self, "Jobs")
        if not self.has_scope(JOBS_SCOPE):
            raise web.HTTPError(403, f"This token lacks the scope {JOBS_SCOPE}")
        return caller

    def write_json(self, status: int, data: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(data))

    def job(self, job_id: str, scope: str) -> JobRecord:
        """The job, for its user (with the jobs scope) or a caller holding ``scope`` for
        its user (admins, services); 404 for everyone else (not even its existence)."""
        current = self.current_user
        if current is None:
            raise web.HTTPError(403, "Authentication required (a user token or login cookie)")
        record = JobManager.shared().record(self.db, job_id)
        if record is not None and self.has_scope(f"{scope}!user={record.user}"):
            return record
        if record is None or isinstance(current, orm.Service) or current.name != record.user:
            raise web.HTTPError(404, f"No job {job_id}")
        self.caller()  # its own user: with the jobs scope
        return record

    def as_json(self, record: JobRecord) -> dict[str, Any]:
        return record.to_json(JobManager.shared().position(record.id))


class JobsAPIHandler(_JobsHandler):
    async def get(self) -> None:
        manager = JobManager.shared()
        if self.get_argument("all", "") not in ("", "0"):
            if self.current_user is None or not self.has_scope("read:servers"):
                raise web.HTTPError(403, "Only admins may list everyone's jobs (read:servers)")
            store = manager.load(self.db)
            jobs = [self.as_json(r) for r in store.everyone()]
            self.write_json(200, {"jobs": jobs, "queues": manager.queue.snapshot()})
            return
        caller = self.caller()
        store = manager.load(self.db)
        self.write_json(200, {"jobs": [self.as_json(r) for r in store.of_user(caller.name)]})

    async def post(self) -> None:
        caller = self.caller()
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The request body is not JSON") from None
        manager = JobManager.shared()
        with _fail():
            spec = parse_spec(body, manager.settings().max_runtime)
            record, position = await manager.submit(self.db, caller, spec)
        self.write_json(202 if position is not None else 201, self.as_json(record))


class JobAPIHandler(_JobsHandler):
    async def get(self, job_id: str) -> None:
        self.write_json(200, self.as_json(self.job(job_id, "read:servers")))

    async def delete(self, job_id: str) -> None:
        record = self.job(job_id, "delete:servers")
        with _fail():
            record = await JobManager.shared().cancel(self.db, record)
        self.write_json(200, self.as_json(record))


class JobResultAPIHandler(_JobsHandler):
    async def post(self, job_id: str) -> None:
        caller = self.caller()
        record = JobManager.shared().record(self.db, job_id)
        if record is None or record.user != caller.name:
            raise web.HTTPError(404, f"No job {job_id}")
        try:
            code = json.loads(self.request.body or b"{}").get("exit_code")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, bool) or not isinstance(code, int):
            raise web.HTTPError(400, "exit_code: an integer")
        JobManager.shared().reported(self.db, record, code)
        self.write_json(200, {"id": job_id, "exit_code": code})
