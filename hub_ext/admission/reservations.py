"""The reservation ledger: what every running or pending server holds, reserved atomically.

The hub runs one asyncio loop, so :meth:`Ledger.reserve` (check + record, no ``await`` in
between) can never let two concurrent spawns both take the last GPU. Each grant is saved in
its spawner's state in the hub database; after a hub restart :meth:`Ledger.restore` puts it
back, and stop, failed spawn or "stopped while the hub was down" release it exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from hub_ext.admission.options import Request
from hub_ext.admission.quota import (
    QuotaTables,
    Standing,
    Usage,
    check_request,
    effective_limits,
    gpu_capacity,
)
from hub_ext.admission.refusals import Refusal


@dataclass(frozen=True)
class Grant:
    """Resources held by one server (``user``/``server``) from reservation to release."""

    id: str
    user: str
    server: str
    profile: str
    cpu: float
    memory: int
    gpus: int
    gpu_type: str | None
    disk: int | None
    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    session_id: int | None = None
    reserved_at: float = 0.0  # epoch seconds (0: a grant saved before it was recorded)
    kind: str = "server"  # server (interactive), job (notebook job), worker (Dask worker)

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)

    def usage(self) -> Usage:
        servers = 1 if self.kind == "server" else 0
        return Usage(servers=servers, cpu=self.cpu, memory=self.memory, gpus=self.gpus)

    def to_state(self) -> dict[str, Any]:
        state = asdict(self)
        state["devices"] = list(self.devices)
        state["groups"] = list(self.groups)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Grant:
        data = dict(state)
        data["devices"] = tuple(data.get("devices", ()))
        data["groups"] = tuple(data.get("groups", ()))
        return cls(**data)


class Ledger:
    """In-memory index of grants with running totals per user, pooled group and GPU type."""

    _shared: ClassVar[Ledger | None] = None
    # called with the hub's ledger when it is first made: grants kept outside spawner
    # state (Dask workers, hub_ext.dask.grants) are put back after a hub restart
    loaders: ClassVar[list[Callable[[Ledger], None]]] = []

    def __init__(self) -> None:
        self._grants: dict[tuple[str, str], Grant] = {}
        self._by_user: dict[str, Usage] = {}
        self._by_group: dict[str, Usage] = {}
        self._gpus: dict[str, int] = {}
        self._devices: dict[str, set[str]] = {}

    @classmethod
    def shared(cls) -> Ledger:
        """The hub process's ledger (spawners and the usage API share it)."""
        if cls._shared is None:
            cls._shared = cls()
            for load in cls.loaders:
                load(cls._shared)
        return cls._shared

    # --- queries ---------------------------------------------------------------------
    def usage(self, user: str) -> Usage:
        u = self._by_user.get(user, Usage())
        return Usage(u.servers, u.cpu, u.memory, u.gpus)

    def group_usage(self, group: str) -> Usage:
        g = self._by_group.get(group, Usage())
        return Usage(g.servers, g.cpu, g.memory, g.gpus)

    def gpus_in_use(self, gpu_type: str) -> int:
        return self._gpus.get(gpu_type, 0)

    def devices_in_use(self, gpu_type: str) -> set[str]:
        return set(self._devices.get(gpu_type, set()))

    def get(self, user: str, server: str) -> Grant | None:
        return self._grants.get((user, server))

    def grants(self) -> list[Grant]:
        return list(self._grants.values())

    def standing(
        self,
        user: str,
        groups: Sequence[str],
        tables: QuotaTables,
        devices: Mapping[str, Sequence[str]],
        gpu_type: str | None,
        *,
        gpu_hours_used: float = 0.0,
    ) -> Standing:
        """What a request of ``user`` (GPUs of ``gpu_type``, or None) is weighed against."""
        pooled = sorted(g for g in groups if g in tables.group_pools)
        return Standing(
            limits=effective_limits(tables, user, groups),
            usage=self.usage(user),
            gpu_hours_used=gpu_hours_used,
            group_pools={g: tables.group_pools[g] for g in pooled},
            group_usage={g: self.group_usage(g) for g in pooled},
            gpu_capacity=gpu_capacity(tables, devices, gpu_type) if gpu_type else None,
            gpus_in_use=self.gpus_in_use(gpu_type) if gpu_type else 0,
        )

    # --- changes ---------------------------------------------------------------------
    def reserve(
        self,
        request: Request,
        *,
        user: str,
        server: str,
        groups: Sequence[str],
        tables: QuotaTables,
        devices: Mapping[str, Sequence[str]],
        gpu_hours_used: float = 0.0,
        kind: str = "server",
    ) -> Grant:
        """Check ``request`` against every limit and record it, atomically (``kind``: what
        it is for; only interactive servers count against the ``servers`` quota).

        Raises:
            Refusal: over quota, group pool full, or no free GPU of that type.
        """
        # JupyterHub never starts a server that is running or pending, so a grant still
        # recorded for this server is stale (its stop failed half-way): it is replaced,
        # and kept if the new request is refused.
        existing = self._grants.get((user, server))
        if existing is not None:
            self.release(existing.user, existing.server, existing.id)
        pooled = tuple(sorted(g for g in groups if g in tables.group_pools))
        try:
            check_request(
                request,
                self.standing(
                    user, groups, tables, devices, request.gpu_type, gpu_hours_used=gpu_hours_used
                ),
                kind,
            )
        except Refusal:
            if existing is not None:
                self._add(existing)
            raise
        gpu_type = request.gpu_type
        assigned: tuple[str, ...] = ()
        if gpu_type and gpu_type in devices:
            taken = self._devices.get(gpu_type, set())
            free = [d for d in devices[gpu_type] if d not in taken]
            assigned = tuple(free[: request.gpus])
        grant = Grant(
            id=uuid.uuid4().hex,
            user=user,
            server=server,
            profile=request.profile.slug,
            cpu=request.cpu,
            memory=request.memory,
            gpus=request.gpus,
            gpu_type=gpu_type,
            disk=request.disk,
            devices=assigned,
            groups=pooled,
            reserved_at=time.time(),
            kind=kind,
        )
        self._add(grant)
        return grant

    def attach_session(self, grant: Grant, session_id: int) -> Grant:
        """Record the GPU accounting row that belongs to ``grant``."""
        updated = Grant(**{**asdict(grant), "session_id": session_id})
        if self._grants.get(grant.key) == grant:
            self._grants[grant.key] = updated
        return updated

    def restore(self, grant: Grant) -> None:
        """Put back a grant loaded from the hub database (idempotent)."""
        current = self._grants.get(grant.key)
        if current is not None and current.id == grant.id:
            return
        if current is not None:
            self.release(current.user, current.server, current.id)
        self._add(grant)

    def release(self, user: str, server: str, grant_id: str | None = None) -> Grant | None:
        """Release what ``user``/``server`` holds; with ``grant_id``, only that grant."""
        grant = self._grants.get((user, server))
        if grant is None or (grant_id is not None and grant.id != grant_id):
            return None
        del self._grants[grant.key]
        self._account(grant, -1)
        return grant

    def _add(self, grant: Grant) -> None:
        self._grants[grant.key] = grant
        self._account(grant, +1)

    def _account(self, grant: Grant, sign: int) -> None:
        used = grant.usage()
        self._by_user.setdefault(grant.user, Usage()).add(used, sign)
        if self._by_user[grant.user] == Usage():
            del self._by_user[grant.user]
        for group in grant.groups:
            self._by_group.setdefault(group, Usage()).add(used, sign)
        if grant.gpu_type and grant.gpus:
            self._gpus[grant.gpu_type] = self._gpus.get(grant.gpu_type, 0) + sign * grant.gpus
            held = self._devices.setdefault(grant.gpu_type, set())
            if sign > 0:
                held.update(grant.devices)
            else:
                held.difference_update(grant.devices)
