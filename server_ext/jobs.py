"""Pulls started through REST run in worker threads; their progress is polled or streamed."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .core import DataService, PullProgress
from .errors import DsdataError


@dataclass
class PullJob:
    id: str
    request: dict[str, Any]
    status: str = "running"  # running, done, failed
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    revision: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request": self.request,
            "status": self.status,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
        }

    def update(self, **changes: Any) -> None:
        with self.changed:
            for key, value in changes.items():
                setattr(self, key, value)
            self.revision += 1
            self.changed.notify_all()


class PullJobs:
    """At most ``workers`` pulls at a time; finished jobs are kept for polling."""

    def __init__(self, service: DataService, workers: int = 2) -> None:
        self.service = service
        self.jobs: dict[str, PullJob] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsdata-pull")

    def start(self, dataset: str, version: str | None, path: str | None, force: bool) -> PullJob:
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
        return self.jobs.get(job_id)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
