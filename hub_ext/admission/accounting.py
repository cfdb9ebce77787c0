"""GPU-hour accounting from server start/stop times, in the hub's own database.

One row per GPU server session in ``dsplatform_gpu_sessions`` (created next to the hub's
tables, SQLite or PostgreSQL alike). Hours used this week = GPUs x overlap of each session
with the current ISO week (Monday 00:00 UTC), counting open sessions up to now, so the
budget survives hub restarts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from hub_ext.state import ensure_tables

metadata = MetaData()

gpu_sessions = Table(
    "dsplatform_gpu_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(255), nullable=False, index=True),
    Column("server", String(255), nullable=False),
    Column("gpu_type", String(255), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("started", DateTime, nullable=False),
    Column("stopped", DateTime, nullable=True),
)


def utcnow() -> dt.datetime:
    """Naive UTC now (the hub stores naive UTC); patched in tests to move time."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def week_start(now: dt.datetime) -> dt.datetime:
    """Monday 00:00 of ``now``'s ISO week."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - dt.timedelta(days=now.weekday())


def gpu_hours(
    sessions: list[tuple[int, dt.datetime, dt.datetime | None]],
    since: dt.datetime,
    now: dt.datetime,
) -> float:
    """GPU-hours of ``(gpus, started, stopped)`` sessions inside ``[since, now]`` (pure)."""
    total = 0.0
    for gpus, started, stopped in sessions:
        end = min(stopped or now, now)
        begin = max(started, since)
        if end > begin:
            total += gpus * (end - begin).total_seconds() / 3600
    return total


class GpuAccounting:
    """Open, close and sum GPU sessions through the hub's SQLAlchemy session."""

    def __init__(self, db: Session) -> None:
        self.db = db
        ensure_tables(db, metadata)

    def open(self, user: str, server: str, gpu_type: str, gpus: int) -> int:
        result: CursorResult[Any] = self.db.execute(  # type: ignore[assignment]
            insert(gpu_sessions).values(
                user=user, server=server, gpu_type=gpu_type, gpus=gpus, started=utcnow()
            )
        )
        self.db.commit()
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def close(self, session_id: int) -> None:
        self.db.execute(
            update(gpu_sessions)
            .where(and_(gpu_sessions.c.id == session_id, gpu_sessions.c.stopped.is_(None)))
            .values(stopped=utcnow())
        )
        self.db.commit()

    def hours_this_week(self, user: str) -> float:
        now = utcnow()
        since = week_start(now)
        rows = self.db.execute(
            select(gpu_sessions.c.gpus, gpu_sessions.c.started, gpu_sessions.c.stopped).where(
                and_(
                    gpu_sessions.c.user == user,
                    or_(gpu_sessions.c.stopped.is_(None), gpu_sessions.c.stopped > since),
                )
            )
        ).all()
        return gpu_hours([(r[0], r[1], r[2]) for r in rows], since, now)

    def hours_by_user_this_week(self) -> dict[str, float]:
        """Every user's GPU-hours of this ISO week (one query), for the admin usage view."""
        now = utcnow()
        since = week_start(now)
        rows = self.db.execute(
            select(
                gpu_sessions.c.user, gpu_sessions.c.gpus, gpu_sessions.c.started,
                gpu_sessions.c.stopped,
            ).where(or_(gpu_sessions.c.stopped.is_(None), gpu_sessions.c.stopped > since))
        ).all()  # fmt: skip
        sessions: dict[str, list[tuple[int, dt.datetime, dt.datetime | None]]] = {}
        for user, gpus, started, stopped in rows:
            sessions.setdefault(user, []).append((gpus, started, stopped))
        return {user: gpu_hours(found, since, now) for user, found in sorted(sessions.items())}
