"""Dask workers in the hub's ledger: each worker, and each cluster's scheduler, is
admitted like a server (grant kind ``worker``) and its grant is kept in the hub's database
(``dsplatform_dask_workers``), as job and server grants are kept in their spawner's state,
so a hub restart puts it back.

The gateway (:mod:`hub_ext.dask.backend`) asks before it starts each worker and gives the
grant back when the worker stops; a user's sandboxes, jobs and workers together never pass
their quota, their groups' pools, the GPU pool or their GPU-hours.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, delete, select
from sqlalchemy.orm import Session

from hub_ext.admission.accounting import GpuAccounting, utcnow
from hub_ext.admission.admit import Applicant, admit
from hub_ext.admission.options import Request, resolve_request
from hub_ext.admission.policy import Policy
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger
from hub_ext.state import ensure_tables

log = logging.getLogger("JupyterHub.dsplatform.dask")  # in the hub's log
KIND = "worker"
SERVER_PREFIX = "dask/"  # a worker's grant key: (user, "dask/<cluster>/<8 hex>")

metadata = MetaData()

workers = Table(
    "dsplatform_dask_workers",
    metadata,
    Column("grant_id", String(32), primary_key=True),
    Column("user", String(255), nullable=False, index=True),
    Column("cluster", String(64), nullable=False, index=True),
    Column("grant", Text, nullable=False),  # Grant.to_state()
    Column("created", DateTime, nullable=False),
)


@dataclass(frozen=True)
class SchedulerSize:
    """What a cluster's scheduler holds (``c.DaskClusters.scheduler_cpu``/``_memory``)."""

    cpu: float
    memory: int


@dataclass(frozen=True)
class WorkerGrant:
    """One admitted worker: its grant and the cluster it belongs to."""

    grant: Grant
    cluster: str
    created: dt.datetime

    def to_json(self) -> dict[str, Any]:
        g = self.grant
        return {
            "id": g.id, "user": g.user, "cluster": self.cluster, "profile": g.profile,
            "cpu": g.cpu, "memory": g.memory, "gpus": g.gpus, "gpu_type": g.gpu_type,
            "devices": list(g.devices),
            "created": self.created.replace(tzinfo=dt.UTC).isoformat(timespec="seconds"),
        }  # fmt: skip


def worker_server(cluster: str) -> str:
    return f"{SERVER_PREFIX}{cluster}/{secrets.token_hex(4)}"


class WorkerGrants:
    """The workers' grants: admit, release, and what is still held (hub process only)."""

    def __init__(self, db: Session, ledger: Ledger | None = None) -> None:
        ensure_tables(db, metadata)
        self.db = db
        self.ledger = ledger or Ledger.shared()

    # --- queries ---------------------------------------------------------------------
    def _rows(self, *where: Any) -> list[WorkerGrant]:
        rows = self.db.execute(select(workers).where(*where).order_by(workers.c.created))
        return [
            WorkerGrant(Grant.from_state(json.loads(r.grant)), r.cluster, r.created) for r in rows
        ]

    def all(self) -> list[WorkerGrant]:
        return self._rows()

    def of_user(self, user: str) -> list[WorkerGrant]:
        return self._rows(workers.c.user == user)

    def get(self, grant_id: str) -> WorkerGrant | None:
        found = self._rows(workers.c.grant_id == grant_id)
        return found[0] if found else None

    # --- changes ---------------------------------------------------------------------
    def admit(
        self, user: str, groups: Sequence[str], cluster: str, options: Mapping[str, Any],
        policy: Policy, scheduler: SchedulerSize | None = None,
    ) -> WorkerGrant:  # fmt: skip
        """Reserve one worker of ``cluster`` (no ``await``: atomic in the hub's loop); with
        ``scheduler``, the cluster's scheduler: the profile of ``options``, the admin's size.

        Raises:
            Refusal: invalid options (400), a profile of other groups (403), over a quota or
                pool (403), no free GPU (503): the same refusals, with numbers, as a spawn.
        """
        accounting = GpuAccounting(self.db)
        applicant = Applicant(user, worker_server(cluster), tuple(groups))
        if scheduler is None:
            grant = admit(dict(options), applicant, policy, self.ledger,
                          accounting.hours_this_week, KIND).grant  # fmt: skip
        else:  # the profile must be the user's; the size is the admin's, not the ranges'
            chosen = resolve_request(dict(options), policy.profiles, applicant.groups).profile
            request = Request(chosen, scheduler.cpu, scheduler.memory, 0, None)
            grant = self.ledger.reserve(
                request, user=user, server=applicant.server, groups=applicant.groups,
                tables=policy.quotas, devices=policy.gpu_devices, kind=KIND,
            )  # fmt: skip
        if grant.gpus and grant.gpu_type:
            session = accounting.open(grant.user, grant.server, grant.gpu_type, grant.gpus)
            grant = self.ledger.attach_session(grant, session)
        record = WorkerGrant(grant, cluster, utcnow())
        self.db.execute(workers.insert().values(
            grant_id=grant.id, user=user, cluster=cluster,
            grant=json.dumps(grant.to_state()), created=record.created,
        ))  # fmt: skip
        self.db.commit()
        what = "scheduler" if scheduler else "worker"
        devices = ",".join(grant.devices) or "-"
        log.info("dsplatform: a Dask %s of %s/%s holds %s CPUs, %s bytes, GPUs %s",
                 what, user, cluster, grant.cpu, grant.memory, devices)  # fmt: skip
        return record

    def fits(
        self, user: str, groups: Sequence[str], options: Mapping[str, Any], count: int,
        policy: Policy,
    ) -> tuple[int, Refusal | None]:  # fmt: skip
        """How many more workers with ``options`` fit now (at most ``count``), and the
        refusal of the first that does not; reserves nothing (the tries are released before
        returning, with no ``await`` between). Invalid options raise their refusal."""
        resolve_request(dict(options), policy.profiles, tuple(groups))
        held: list[Grant] = []
        refusal: Refusal | None = None
        hours = GpuAccounting(self.db).hours_this_week
        try:
            for _ in range(count):
                try:
                    applicant = Applicant(user, worker_server("check"), tuple(groups))
                    admission = admit(dict(options), applicant, policy, self.ledger, hours, KIND)
                    held.append(admission.grant)
                except Refusal as r:
                    refusal = r
                    break
        finally:
            for g in held:
                self.ledger.release(g.user, g.server, g.id)
        return len(held), refusal

    def release(self, grant_id: str) -> WorkerGrant | None:
        """Give back one worker's grant (idempotent); its GPU session ends."""
        record = self.get(grant_id)
        if record is None:
            return None
        self._forget([record])
        return record

    def release_where(self, *, cluster: str | None = None,
                      keep: set[str] | None = None) -> list[WorkerGrant]:  # fmt: skip
        """Release a cluster's grants, or (``keep``) every grant not in ``keep``."""
        records = self.all()
        if cluster is not None:
            records = [r for r in records if r.cluster == cluster]
        if keep is not None:
            records = [r for r in records if r.grant.id not in keep]
        self._forget(records)
        return records

    def _forget(self, records: Sequence[WorkerGrant]) -> None:
        if not records:
            return
        accounting = GpuAccounting(self.db)
        for record in records:
            g = record.grant
            self.ledger.release(g.user, g.server, g.id)
            if g.session_id is not None:
                accounting.close(g.session_id)
        ids = [r.grant.id for r in records]
        self.db.execute(delete(workers).where(workers.c.grant_id.in_(ids)))
        self.db.commit()
        from hub_ext.jobs.manager import JobManager

        JobManager.shared().kick()  # waiting jobs may fit now

    def restore(self) -> int:
        """Put every kept grant back into the ledger (after a hub restart)."""
        records = self.all()
        for record in records:
            self.ledger.restore(record.grant)
        return len(records)


def restore_into(ledger: Ledger) -> None:
    """:attr:`Ledger.loaders` entry: the hub's kept worker grants, when its ledger is made."""
    from jupyterhub.app import JupyterHub

    if not JupyterHub.initialized():  # not inside a running hub (a test, a tool)
        return
    db = getattr(JupyterHub.instance(), "db", None)
    if db is None:
        return
    count = WorkerGrants(db, ledger).restore()
    if count:
        log.info("dsplatform: %d Dask workers' grants restored", count)
