"""Four-eyes promotion of model versions to protected aliases, with history and rollback.

A model's owner (who may edit it in MLflow: its creator, their sharing groups, admins)
requests ``version -> alias``; the gates are computed then (:mod:`.gates`); an approver (a
token with ``custom:dsplatform:approve``) who is not the requester approves or rejects it. On
approval the catalog, the only caller MLflow lets move a protected alias, moves it. A
rollback by an approver moves the alias back to the version approved before the current
one. Every request, decision and rollback is an event in an append-only table of the
platform's database (``c.ModelGovernance.db_url``), so the history survives restarts.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from hub_ext.services.catalog.errors import CatalogError
from hub_ext.services.catalog.gates import Candidate, Gate, gates

metadata = MetaData()
promotions_table = Table(
    "dsplatform_promotions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(255), nullable=False, index=True),
    Column("alias", String(255), nullable=False),
    Column("version", String(32), nullable=False),
    Column("requester", String(255), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False),  # pending, approved, rejected
    Column("gates", Text, nullable=False),  # JSON list of gates
    Column("created", DateTime, nullable=False),
)
events_table = Table(
    "dsplatform_model_events",  # append-only: never updated, never deleted
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False, index=True),
    Column("alias", String(255), nullable=False),
    Column("event", String(16), nullable=False),  # requested, approved, rejected, rollback
    Column("promotion", String(32), nullable=True),
    Column("actor", String(255), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("to_version", String(32), nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("overridden", Text, nullable=True),  # JSON: the failing gates an approver overrode
    Column("time", DateTime, nullable=False),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Caller:
    """Who asks: a hub user, whether they hold the approve scope, whether an admin."""

    name: str
    approver: bool = False
    admin: bool = False


class Registry(Protocol):
    """What the flow needs of the model registry (MLflow, as the catalog sees it)."""

    def candidate(self, model: str, version: str) -> Candidate: ...

    def alias_version(self, model: str, alias: str) -> str | None: ...

    def set_alias(self, model: str, alias: str, version: str) -> None: ...

    def may_edit(self, user: str, model: str) -> bool: ...


@dataclass(frozen=True)
class Rules:
    protected_aliases: frozenset[str]
    gate_metric: str = ""
    gate_metric_direction: str = "higher"


class Promotions:
    """Requests, decisions, rollbacks and the history, in the platform's database."""

    def __init__(self, db_url: str, registry: Registry, rules: Rules) -> None:
        self.engine = create_engine(db_url, pool_pre_ping=True)
        self.registry, self.rules = registry, rules
        self._lock = threading.Lock()  # one decision about an alias at a time
        self._schema = False

    def ready(self) -> None:
        """The tables exist (created on first use: an unreachable database is a 503 for
        the promotion routes, never a catalog that does not start)."""
        if self._schema:
            return
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as e:
            raise CatalogError(
                503, f"The platform database is unreachable: {str(e)[:200]}"
            ) from None
        self._schema = True

    # --- reading -------------------------------------------------------------------------
    def history(self, model: str) -> list[dict[str, Any]]:
        self.ready()
        with self.engine.connect() as db:
            rows = db.execute(
                select(events_table).where(events_table.c.model == model)
                .order_by(events_table.c.id)
            ).mappings().all()  # fmt: skip
        return [_event(r) for r in rows]

    def promotions(self, model: str, state: str | None = None) -> list[dict[str, Any]]:
        self.ready()
        query = select(promotions_table).where(promotions_table.c.model == model)
        if state:
            query = query.where(promotions_table.c.state == state)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(promotions_table.c.created)).mappings().all()
        return [_promotion(r) for r in rows]

    def get(self, model: str, promotion: str) -> dict[str, Any]:
        self.ready()
        with self.engine.connect() as db:
            row = db.execute(
                select(promotions_table).where(
                    promotions_table.c.id == promotion, promotions_table.c.model == model
                )
            ).mappings().first()  # fmt: skip
        if row is None:
            raise CatalogError(404, f"No promotion {promotion[:40]!r} of model {model!r}")
        return _promotion(row)

    # --- the flow ------------------------------------------------------------------------
    def request(
        self, model: str, version: str, alias: str, note: str, caller: Caller
    ) -> dict[str, Any]:
        """The owner asks for ``version`` to become ``alias``: pending, with its gates."""
        self.ready()
        self._protected(alias)
        if not (caller.admin or self.registry.may_edit(caller.name, model)):
            raise CatalogError(403, f"Only the owners of {model!r} may request its promotion")
        candidate = self.registry.candidate(model, version)  # 404 if it does not exist
        current_version = self.registry.alias_version(model, alias)
        if current_version == version:
            raise CatalogError(409, f"{alias!r} of {model!r} is version {version} already")
        current = self.registry.candidate(model, current_version) if current_version else None
        found = gates(candidate, current, self.rules.gate_metric,
                      self.rules.gate_metric_direction)  # fmt: skip
        promotion_id = uuid.uuid4().hex
        promotion: dict[str, Any] = {
            "id": promotion_id,
            "model": model,
            "alias": alias,
            "version": version,
            "requester": caller.name,
            "note": note,
            "state": "pending",
            "gates": json.dumps([g.as_dict() for g in found]),
            "created": utcnow(),
        }
        with self.engine.begin() as db:
            db.execute(insert(promotions_table).values(**promotion))
            self._event(db, model, alias, "requested", promotion_id, caller.name,
                        current_version, version, note)  # fmt: skip
        return self.get(model, promotion_id)

    def decide(
        self,
        model: str,
        promotion: str,
        caller: Caller,
        *,
        approve: bool,
        reason: str = "",
        override: bool = False,
    ) -> dict[str, Any]:
        """An approver approves (the alias moves) or rejects a pending request."""
        self.ready()
        if not caller.approver:
            raise CatalogError(
                403, "Approving needs a token with the scope custom:dsplatform:approve"
            )
        with self._lock:
            found = self.get(model, promotion)
            if found["state"] != "pending":
                raise CatalogError(409, f"Promotion {promotion} is {found['state']} already")
            if found["requester"] == caller.name:
                raise CatalogError(403, "Four eyes: you cannot decide your own request")
            failing = [g for g in found["gates"] if not g["passed"]]
            if approve and failing and not override:
                names = ", ".join(g["name"] for g in failing)
                raise CatalogError(
                    409, f"Gates failed ({names}): approve with override and a reason, or reject"
                )
            if override and not reason.strip():
                raise CatalogError(400, "Overriding a failing gate needs a reason")
            previous = self.registry.alias_version(model, found["alias"])
            if approve:
                self.registry.set_alias(model, found["alias"], found["version"])
            state = "approved" if approve else "rejected"
            with self.engine.begin() as db:
                db.execute(update(promotions_table).where(promotions_table.c.id == promotion)
                           .values(state=state))  # fmt: skip
                self._event(db, model, found["alias"], state, promotion, caller.name, previous,
                            found["version"], reason,
                            overridden=failing if (approve and failing) else None)  # fmt: skip
        return self.get(model, promotion)

    def rollback(self, model: str, alias: str, reason: str, caller: Caller) -> dict[str, Any]:
        """Move ``alias`` back to the version approved before the current one."""
        self.ready()
        if not caller.approver:
            raise CatalogError(
                403, "Rolling back needs a token with the scope custom:dsplatform:approve"
            )
        self._protected(alias)
        with self._lock:
            current = self.registry.alias_version(model, alias)
            target = previous_version(self.history(model), alias, current)
            if target is None:
                raise CatalogError(
                    409, f"{alias!r} of {model!r} has no earlier approved version to go back to"
                )
            self.registry.set_alias(model, alias, target)
            with self.engine.begin() as db:
                self._event(db, model, alias, "rollback", None, caller.name, current, target,
                            reason)  # fmt: skip
        return {"model": model, "alias": alias, "from_version": current, "to_version": target}

    # --- helpers -------------------------------------------------------------------------
    def _protected(self, alias: str) -> None:
        if alias not in self.rules.protected_aliases:
            allowed = ", ".join(sorted(self.rules.protected_aliases)) or "none"
            raise CatalogError(
                400,
                f"{alias[:64]!r} is not a protected alias (protected: {allowed}): its "
                "owner sets it directly",
            )

    def _event(
        self, db: Any, model: str, alias: str, event: str, promotion: str | None, actor: str,
        from_version: str | None, to_version: str | None, note: str,
        overridden: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:  # fmt: skip
        db.execute(insert(events_table).values(
            model=model, alias=alias, event=event, promotion=promotion, actor=actor,
            from_version=from_version, to_version=to_version, note=note,
            overridden=json.dumps(list(overridden)) if overridden else None, time=utcnow(),
        ))  # fmt: skip


def previous_version(
    history: Sequence[Mapping[str, Any]], alias: str, current: str | None
) -> str | None:
    """The version ``alias`` held before the approval that made it ``current`` (pure; from
    the history): a rollback undoes an approval, and a version that came back by a rollback
    has no earlier approval of its own to undo."""
    for event in reversed(history):
        approval = event["alias"] == alias and event["event"] == "approved"
        if approval and event["to_version"] == current:
            return str(event["from_version"]) if event["from_version"] else None
    return None


def _event(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["time"] = row["time"].isoformat(timespec="seconds") + "Z"
    data["overridden"] = json.loads(row["overridden"]) if row["overridden"] else None
    return data


def _promotion(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["created"] = row["created"].isoformat(timespec="seconds") + "Z"
    data["gates"] = json.loads(row["gates"])
    return data


__all__ = ["Caller", "CatalogError", "Gate", "Promotions", "Rules", "previous_version"]
