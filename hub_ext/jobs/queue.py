"""Waiting jobs: one FIFO per queue (a group of the user's, or the user alone), in memory,
rebuilt from the job records when the hub starts. Only the head of a queue may start: a job
never overtakes an older one of its queue (a big request at the head holds the smaller ones
behind it until it fits, so it cannot starve)."""

from __future__ import annotations

from collections.abc import Sequence


def queue_of(user: str, groups: Sequence[str], pooled: Sequence[str]) -> str:
    """The queue a user's jobs wait in: their first pooled group (the pool they share),
    else their first group, else their own."""
    for choice in (sorted(g for g in groups if g in pooled), sorted(groups)):
        if choice:
            return f"group:{choice[0]}"
    return f"user:{user}"


class JobQueue:
    def __init__(self) -> None:
        self._queues: dict[str, list[str]] = {}
        self._where: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._where

    def push(self, queue: str, job_id: str, *, front: bool = False) -> None:
        if job_id in self._where:
            return
        waiting = self._queues.setdefault(queue, [])
        waiting.insert(0, job_id) if front else waiting.append(job_id)
        self._where[job_id] = queue

    def remove(self, job_id: str) -> bool:
        queue = self._where.pop(job_id, None)
        if queue is None:
            return False
        self._queues[queue].remove(job_id)
        if not self._queues[queue]:
            del self._queues[queue]
        return True

    def position(self, job_id: str) -> int | None:
        """1 for the head of its queue."""
        queue = self._where.get(job_id)
        return None if queue is None else self._queues[queue].index(job_id) + 1

    def heads(self) -> list[str]:
        return [waiting[0] for _, waiting in sorted(self._queues.items())]

    def waiting(self, queue: str) -> int:
        return len(self._queues.get(queue, ()))

    def snapshot(self) -> dict[str, list[str]]:
        return {q: list(w) for q, w in sorted(self._queues.items())}
