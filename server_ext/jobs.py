"""Pulls started through REST run in worker threads; their progress is polled or streamed.

A job signals each change itself: the Server-Sent Events stream awaits
:meth:`PullJob.next_change` (woken from the worker thread through the stream's event loop)
instead of polling. Finished jobs stay readable for ``keep_seconds`` and at most ``keep``
of them are kept; older ones are pruned when a pull starts or a job is looked up.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .core import DataService, PullProgress
from .errors import DsdataError


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class PullJob:
    id: str
    request: dict[str, Any]
    status: str = "running"  # running, done, failed
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    revision: int = 0
    finished_at: float | None = None  # time.monotonic() when it stopped running
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list, repr=False
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request": self.request,
            "status": self.status,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
        }

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        """The revision and the job's state at that revision, read together."""
        with self._lock:
            return self.revision, self.as_dict()

    def update(self, **changes: Any) -> None:
        """Apply ``changes`` (from the worker thread) and wake everyone waiting."""
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
            self.revision += 1
            if self.status != "running" and self.finished_at is None:
                self.finished_at = time.monotonic()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)

    async def next_change(self, seen: int) -> None:
        """Return once the job's revision differs from ``seen`` (at once if it already does)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.revision != seen:
                return
            self._waiters.append((loop, future))
        await future


class PullJobs:
    """At most ``workers`` pulls at a time; finished jobs are kept a while for polling."""

    def __init__(
        self,
        service: DataService,
        workers: int = 2,
        *,
        keep: int = 100,
        keep_seconds: float = 3600.0,
    ) -> None:
        self.service = service
        self.jobs: dict[str, PullJob] = {}
        self.keep, self.keep_seconds = keep, keep_seconds
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsdata-pull")

    def start(self, dataset: str, version: str | None, path: str | None, force: bool) -> PullJob:
        self.prune()
        job = PullJob(
            id=uuid.uuid4().hex,
            request={"dataset": dataset, "version": version, "path": path, "force": force},
        )
        self.jobs[job.id] = job

        def on_progress(progress: PullProgress) -> None:
            job.update(progress=progress.as_dict())

        def run() -> None:
            try:
                result = self.service.pull(
                    dataset, path, version=version, force=force, on_progress=on_progress
                )
            except DsdataError as e:
                job.update(status="failed", error={"message": e.message, "status": e.status})
            except Exception as e:  # unexpected: still reported, never lost
                job.update(
                    status="failed", error={"message": f"{type(e).__name__}: {e}", "status": 500}
                )
            else:
                job.update(status="done", result=result.as_dict())

        self.pool.submit(run)
        return job

    def get(self, job_id: str) -> PullJob | None:
        self.prune()
        return self.jobs.get(job_id)

    def prune(self, now: float | None = None) -> None:
        """Forget finished jobs older than ``keep_seconds``, and beyond the newest ``keep``."""
        now = time.monotonic() if now is None else now
        finished = sorted(
            (job.finished_at, job_id)
            for job_id, job in self.jobs.items()
            if job.finished_at is not None
        )
        fresh = [job_id for at, job_id in finished if now - at <= self.keep_seconds]
        kept = set(fresh[-self.keep :]) if self.keep > 0 else set()
        for _, job_id in finished:
            if job_id not in kept:
                del self.jobs[job_id]

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
