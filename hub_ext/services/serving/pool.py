"""A bounded pool of serving workers on this machine, one per served (model, version).

``invoke`` starts the version's worker on demand (as the serving account, with a clean
environment), forwards the request over the worker's Unix socket and answers with the
worker's status and body. At most ``max_workers`` live at once: the least recently used idle
one stops first. A worker that crashes answers 502 and is started again by the next request;
one that hangs (past ``request_timeout``, or ``start_timeout`` while loading) answers 504 and
is killed. Everything is asynchronous, so a hung model holds nothing but its own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.netutil import Resolver

from hub_ext.spawners.accounts import Account, drop_privileges

WORKER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_DISABLE_TELEMETRY": "true",  # a worker talks to nobody but the catalog
    "DO_NOT_TRACK": "true",
}


@dataclass(frozen=True)
class Answer:
    """What a worker (or the pool, for a failed worker) answers: a JSON body."""

    status: int
    body: bytes

    @classmethod
    def error(cls, status: int, error_code: str, message: str) -> Answer:
        return cls(status, json.dumps({"message": message, "error_code": error_code}).encode())


class UnixResolver(Resolver):
    """Every host name resolves to one Unix socket (tornado's HTTP client over AF_UNIX)."""

    def initialize(self, path: str) -> None:
        self.path = path

    async def resolve(self, host: str, port: int, family: Any = socket.AF_UNSPEC) -> Any:
        return [(socket.AF_UNIX, self.path)]


@dataclass
class Worker:
    key: str
    process: subprocess.Popen[bytes]
    socket_path: Path
    log_path: Path
    client: AsyncHTTPClient
    started: float = field(default_factory=time.monotonic)
    ready_seconds: float | None = None
    busy: int = 0
    used: float = field(default_factory=time.monotonic)
    stopped_for: str = ""  # why the pool stopped it ("hung", "crashed", ...)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 600) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        return (lines[-1] if lines else "")[-limit:]


def share_with(path: Path, account: Account) -> None:
    """The model's files readable by the serving account (group), writable by nobody."""
    for directory, _dirs, files in os.walk(path):
        os.chown(directory, 0, account.gid)
        os.chmod(directory, 0o750)
        for name in files:
            file = os.path.join(directory, name)
            os.chown(file, 0, account.gid, follow_symlinks=False)
            if not os.path.islink(file):
                os.chmod(file, 0o640)


class WorkerPool:
    """Serving workers on this machine (see the module's docstring)."""

    def __init__(
        self,
        root: Path,
        max_workers: int = 4,
        start_timeout: float = 120.0,
        request_timeout: float = 30.0,
        account: Account | None = None,
    ) -> None:
        self.root = root
        self.max_workers = max_workers
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.account = account
        self.sockets = root / "sockets"
        self.homes = root / "work"
        for directory in (root, self.sockets, self.homes):
            directory.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.chmod(self.sockets, 0o700)  # only the catalog connects; workers inherit their fd
        self._workers: OrderedDict[str, Worker] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self.starts = 0
        self.stops: Counter[str] = Counter()  # why workers stopped, for the gateway's metrics

    # --- requests -------------------------------------------------------------------------
    async def invoke(self, key: str, model_dir: Path, body: bytes, content_type: str) -> Answer:
        """The worker's answer to ``POST /invocations`` for the model in ``model_dir``."""
        try:
            worker = await self.worker(key, model_dir)
        except WorkerFailed as e:
            return e.answer
        worker.busy += 1
        worker.used = time.monotonic()
        request = HTTPRequest(
            "http://worker/invocations",
            method="POST",
            body=body,
            headers={"Content-Type": content_type},
            request_timeout=self.request_timeout,
        )
        try:
            response = await worker.client.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            response = None
            failure = e
        finally:
            worker.busy -= 1
            worker.used = time.monotonic()
        if response is not None and response.code != 599:
            return Answer(response.code, response.body or b"{}")
        error = response.error if response is not None else failure
        timed_out = "Timeout" in type(error).__name__ + str(error)
        if worker.stopped_for == "hung" or (timed_out and worker.alive()):
            self.retire(worker, "hung")  # with every request it holds
            return Answer.error(
                504,
                "DEADLINE_EXCEEDED",
                f"The model did not answer within {self.request_timeout:g} s; "
                "its worker was restarted",
            )
        await asyncio.sleep(0.05)  # let a dying worker's exit status arrive
        detail = self.exit_detail(worker)
        self.retire(worker, "crashed")
        return Answer.error(
            502,
            "TEMPORARILY_UNAVAILABLE",
            f"The model's worker failed during the request ({detail})",
        )

    async def worker(self, key: str, model_dir: Path) -> Worker:
        """The live worker of ``key``, started (and waited for) if there is none."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one start per key, even for simultaneous first requests
            found = self._workers.get(key)
            if found is not None and found.alive():
                self._workers.move_to_end(key)
                return found
            if found is not None:
                self.retire(found, "exited")
            worker = self._start(key, model_dir)
            self._workers[key] = worker
            try:
                await self._wait_ready(worker)
            except WorkerFailed:
                self.retire(worker, "failed to start")
                raise
            self._evict(keep=key)
            return worker

    # --- processes ------------------------------------------------------------------------
    def _start(self, key: str, model_dir: Path) -> Worker:
        home = self.homes / key
        shutil.rmtree(home, ignore_errors=True)
        (home / "tmp").mkdir(parents=True, mode=0o700)
        socket_path = self.sockets / f"{key}-{self.starts}.sock"  # never a previous one's
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(socket_path))
        os.chmod(socket_path, 0o600)
        listener.listen(64)
        log_path = home / "worker.log"
        account = self.account
        if account is not None:
            share_with(model_dir, account)
            for path in (home, home / "tmp"):
                os.chown(path, account.uid, account.gid)

        def preexec() -> None:
            if account is not None:
                drop_privileges(account)
            os.umask(0o077)

        env = {**WORKER_ENV, "HOME": str(home), "TMPDIR": str(home / "tmp")}
        try:
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-I",
                        "-m",
                        "hub_ext.services.serving.worker",
                        "--model-dir",
                        str(model_dir),
                        "--fd",
                        str(listener.fileno()),
                    ],
                    env=env,
                    cwd=home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(listener.fileno(),),
                    preexec_fn=preexec,
                    start_new_session=True,
                )
        finally:
            listener.close()  # the worker holds it now
        self.starts += 1
        client = AsyncHTTPClient(
            force_instance=True, max_clients=64, resolver=UnixResolver(path=str(socket_path))
        )
        return Worker(key, process, socket_path, log_path, client)

    async def _wait_ready(self, worker: Worker) -> None:
        deadline = worker.started + self.start_timeout
        while True:
            if not worker.alive():
                raise WorkerFailed(
                    Answer.error(
                        502,
                        "TEMPORARILY_UNAVAILABLE",
                        f"The model could not be loaded ({self.exit_detail(worker)})",
                    )
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerFailed(
                    Answer.error(
                        504,
                        "DEADLINE_EXCEEDED",
                        f"The model did not load within {self.start_timeout:g} s",
                    )
                )
            try:
                ping = await worker.client.fetch(
                    "http://worker/ping", request_timeout=min(left, 1.0), raise_error=False
                )
            except (OSError, HTTPClientError):  # refused, or still loading
                ping = None
            if ping is not None and ping.code == 200:
                worker.ready_seconds = time.monotonic() - worker.started
                return
            await asyncio.sleep(0.05)

    def exit_detail(self, worker: Worker) -> str:
        code = worker.process.poll()
        status = (
            "still running"
            if code is None
            else (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
        )
        tail = worker.log_tail()
        return f"{status}: {tail}" if tail else status

    def retire(self, worker: Worker, reason: str) -> None:
        """Stop ``worker`` (killed if alive); its key is free for a new one."""
        if self._workers.get(worker.key) is worker:
            del self._workers[worker.key]
        if worker.stopped_for:
            return
        worker.stopped_for = reason
        self.stops[reason] += 1
        if worker.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=5)
        worker.client.close()
        with contextlib.suppress(FileNotFoundError):
            worker.socket_path.unlink()

    def _evict(self, keep: str) -> None:
        """Stop least recently used idle workers beyond ``max_workers`` (never ``keep``)."""
        by_use = sorted(self._workers.items(), key=lambda kv: kv[1].used)
        idle = [k for k, w in by_use if not w.busy and k != keep]
        while len(self._workers) > self.max_workers and idle:
            self.retire(self._workers[idle.pop(0)], "least recently used")

    def close(self) -> None:
        for worker in list(self._workers.values()):
            self.retire(worker, "closing")

    def events(self) -> dict[str, int]:
        """Worker starts, and stops by reason (``crashed``, ``hung``, ``failed to start``,
        ``least recently used``, ...), since the pool began."""
        return {"started": self.starts, **self.stops}

    def status(self) -> list[dict[str, Any]]:
        """The live workers, for ``/health``."""
        return [
            {
                "key": w.key,
                "pid": w.process.pid,
                "alive": w.alive(),
                "busy": w.busy,
                "ready_seconds": w.ready_seconds,
            }
            for w in self._workers.values()
        ]


class WorkerFailed(Exception):
    """A worker that could not start: the answer to give instead."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body.decode())
        self.answer = answer
