"""REST pull jobs: the event stream is woken by the job itself; finished jobs are pruned."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from server_ext.core import DataService
from server_ext.jobs import PullJob, PullJobs


def finished(jobs: PullJobs, job_id: str, at: float) -> PullJob:
    job = PullJob(id=job_id, request={})
    jobs.jobs[job_id] = job
    job.update(status="done")
    job.finished_at = at
    return job


@pytest.mark.asyncio
async def test_a_waiting_stream_wakes_when_the_worker_thread_updates_the_job() -> None:
    job = PullJob(id="a", request={})
    seen, _ = job.snapshot()
    await asyncio.wait_for(job.next_change(seen - 1), 1)  # already different: at once
    waiter = asyncio.ensure_future(job.next_change(seen))
    await asyncio.sleep(0.2)
    assert not waiter.done()  # nothing changed: it waits, without polling
    threading.Timer(0.05, job.update, kwargs={"progress": {"bytes_done": 1}}).start()
    await asyncio.wait_for(waiter, 2)
    revision, state = job.snapshot()
    assert revision == seen + 1 and state["progress"] == {"bytes_done": 1}


def test_finished_jobs_are_pruned_by_age_and_count(tmp_path: Path) -> None:
    jobs = PullJobs(DataService(root=tmp_path, cache_dir=tmp_path / "cache"), keep=3,
                    keep_seconds=60)  # fmt: skip
    try:
        now = time.monotonic()
        running = PullJob(id="running", request={})
        jobs.jobs["running"] = running
        finished(jobs, "old", now - 120)
        for i in range(5):
            finished(jobs, f"recent{i}", now - 10 + i)
        jobs.prune(now)
        # never a running job; the three newest finished ones within an hour
        assert sorted(jobs.jobs) == ["recent2", "recent3", "recent4", "running"]
        assert jobs.get("recent4") is not None and jobs.get("old") is None
    finally:
        jobs.shutdown()
