"""Job records in the hub's own database (``dsplatform_jobs``, next to the hub's tables,
SQLite or PostgreSQL alike): what was asked, by whom, its state and times. They outlive the
job's server, so ``%dsdata jobs`` and the admin view show finished jobs, and a hub restart
finds the queue and the running jobs again."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from hub_ext.admission.accounting import utcnow
from hub_ext.jobs.spec import JobSpec, server_name
from hub_ext.state import ensure_tables

metadata = MetaData()

jobs = Table(
    "dsplatform_jobs",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("user", String(255), nullable=False, index=True),
    Column("queue", String(255), nullable=False),
    Column("spec", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("submitted", DateTime, nullable=False),
    Column("started", DateTime, nullable=True),
    Column("finished", DateTime, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("message", Text, nullable=False, default=""),
)

QUEUED, STARTING, RUNNING = "queued", "starting", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed-out"
ACTIVE = (QUEUED, STARTING, RUNNING)
OUTPUT_DIR = "jobs"  # beside the notebook: jobs/<id>/<notebook>.ipynb and log.txt


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="seconds") if value else None


@dataclass(frozen=True)
class JobRecord:
    id: str
    user: str
    queue: str
    spec: JobSpec
    state: str
    submitted: dt.datetime
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    exit_code: int | None = None
    message: str = ""

    @property
    def server(self) -> str:
        return server_name(self.id)

    @property
    def output_dir(self) -> str:
        """Beside the notebook (so a committed job's output is inside its project)."""
        folder = self.spec.notebook.rpartition("/")[0]
        return f"{folder}/{OUTPUT_DIR}/{self.id}" if folder else f"{OUTPUT_DIR}/{self.id}"

    @property
    def output(self) -> str:
        return f"{self.output_dir}/{self.spec.notebook.rsplit('/', 1)[-1]}"

    def duration(self, now: dt.datetime) -> float | None:
        if self.started is None:
            return None
        return round(((self.finished or now) - self.started).total_seconds(), 1)

    def to_json(self, position: int | None = None) -> dict[str, Any]:
        data = {
            "id": self.id, "user": self.user, "state": self.state, "queue": self.queue,
            "notebook": self.spec.notebook, "parameters": self.spec.parameters,
            "options": self.spec.options, "commit": self.spec.commit,
            "submitted": _iso(self.submitted), "started": _iso(self.started),
            "finished": _iso(self.finished), "duration": self.duration(utcnow()),
            "exit_code": self.exit_code, "message": self.message, "server": self.server,
            "output": self.output, "log": f"{self.output_dir}/log.txt",
        }  # fmt: skip
        if position is not None:
            data["position"] = position
        return data


def _record(row: Any) -> JobRecord:
    return JobRecord(row.id, row.user, row.queue, JobSpec.from_json(json.loads(row.spec)),
                     row.state, row.submitted, row.started, row.finished, row.exit_code,
                     row.message or "")  # fmt: skip


class JobStore:
    """Read and change job records through the hub's SQLAlchemy session."""

    def __init__(self, db: Session) -> None:
        self.db = db
        ensure_tables(db, metadata)

    def add(self, job_id: str, user: str, queue: str, spec: JobSpec, state: str) -> JobRecord:
        submitted = utcnow()
        self.db.execute(jobs.insert().values(
            id=job_id, user=user, queue=queue, spec=json.dumps(spec.to_json()), state=state,
            submitted=submitted, message="",
        ))  # fmt: skip
        self.db.commit()
        return JobRecord(job_id, user, queue, spec, state, submitted)

    def get(self, job_id: str) -> JobRecord | None:
        row = self.db.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return _record(row) if row is not None else None

    def of_user(self, user: str, limit: int = 200) -> list[JobRecord]:
        rows = self.db.execute(select(jobs).where(jobs.c.user == user)
                               .order_by(jobs.c.submitted.desc()).limit(limit)).all()  # fmt: skip
        return [_record(r) for r in rows]

    def everyone(self, limit: int = 1000) -> list[JobRecord]:
        rows = self.db.execute(select(jobs).order_by(jobs.c.submitted.desc()).limit(limit)).all()
        return [_record(r) for r in rows]

    def count(self, user: str, state: str) -> int:
        return int(self.db.execute(select(func.count()).select_from(jobs).where(
            jobs.c.user == user, jobs.c.state == state)).scalar_one())  # fmt: skip

    def in_states(self, *states: str) -> list[JobRecord]:
        rows = self.db.execute(select(jobs).where(jobs.c.state.in_(states))
                               .order_by(jobs.c.submitted, jobs.c.id)).all()  # fmt: skip
        return [_record(r) for r in rows]

    def set_state(self, job_id: str, state: str, *, only_if: tuple[str, ...] = (),
                  **values: Any) -> bool:  # fmt: skip
        """Change a record (``only_if``: only from those states); whether it changed."""
        statement = update(jobs).where(jobs.c.id == job_id)
        if only_if:
            statement = statement.where(jobs.c.state.in_(only_if))
        result = self.db.execute(statement.values(state=state, **values))
        self.db.commit()
        return bool(getattr(result, "rowcount", 0))
