"""The catalog's promotion routes (under ``api/models/{name}/``):

* ``POST promotions`` ``{"version", "alias", "note"}``: the model's owner asks; 201 with the
  pending request and its gates;
* ``GET promotions`` (``?state=pending``): the requests;
* ``POST promotions/{id}/approve`` ``{"reason", "override"}`` and ``.../reject``
  ``{"reason"}``: an approver decides (never their own request);
* ``POST rollback`` ``{"alias", "reason"}``: an approver moves the alias back;
* ``GET history``: every request, decision and rollback, with who, when and the versions.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from hub_ext.services.catalog.governance import APPROVE_SCOPE
from hub_ext.services.catalog.handlers import CatalogHandler
from hub_ext.services.catalog.promotions import Caller, Promotions


class PromotionRoute(CatalogHandler):
    """Base: the caller as the flow sees them, its errors as JSON with their status."""

    def caller(self) -> Caller:
        user = self.require_user()
        scopes = set(user.get("scopes", []))
        return Caller(str(user["name"]), approver=APPROVE_SCOPE in scopes,
                      admin=bool(user.get("admin")))  # fmt: skip

    @property
    def promotions(self) -> Promotions:
        found: Promotions | None = self.app.promotions
        if found is None:
            raise web.HTTPError(503, "Promotions need the platform's MLflow server")
        return found

    async def run(
        self, func: Any, *args: Any, status: int = 200, event: str = "", **kwargs: Any
    ) -> None:
        """``func`` in a thread, its result as JSON (a CatalogError answers with its status);
        a done ``event`` (``requested``, ``approved``, ...) is counted in the metrics."""
        result = await self.in_thread(lambda: func(*args, **kwargs))
        if event and self.app.monitor.enabled:
            self.app.monitor.metrics.promotion(str(args[0]), event)
        self.write_json(result, status=status)


class PromotionsHandler(PromotionRoute):
    async def get(self, name: str) -> None:
        self.require_user()
        state = self.get_argument("state", None)
        if state not in (None, "pending", "approved", "rejected"):
            raise web.HTTPError(400, "state must be pending, approved or rejected")
        await self.run(lambda: {"promotions": self.promotions.promotions(name, state)})

    async def post(self, name: str) -> None:
        caller = self.caller()
        body = self.json_body({"version", "alias", "note"}, required={"version", "alias"})
        version, alias = body["version"], body["alias"]
        if isinstance(version, bool) or not isinstance(version, int | str):
            raise web.HTTPError(400, "'version' must be a version number like 2")
        if not isinstance(alias, str) or not isinstance(body.get("note", ""), str):
            raise web.HTTPError(400, "'alias' and 'note' must be strings")
        await self.run(self.promotions.request, name, str(version), alias,
                       body.get("note", ""), caller, status=201, event="requested")  # fmt: skip


class DecisionHandler(PromotionRoute):
    async def post(self, name: str, promotion: str, decision: str) -> None:
        caller = self.caller()
        body = self.json_body({"reason", "override"})
        reason, override = body.get("reason", ""), body.get("override", False)
        if not isinstance(reason, str) or not isinstance(override, bool):
            raise web.HTTPError(400, "'reason' must be a string and 'override' a boolean")
        await self.run(self.promotions.decide, name, promotion, caller,
                       approve=decision == "approve", reason=reason, override=override,
                       event="approved" if decision == "approve" else "rejected")  # fmt: skip


class RollbackHandler(PromotionRoute):
    async def post(self, name: str) -> None:
        caller = self.caller()
        body = self.json_body({"alias", "reason"}, required={"alias"})
        alias, reason = body["alias"], body.get("reason", "")
        if not isinstance(alias, str) or not isinstance(reason, str):
            raise web.HTTPError(400, "'alias' and 'reason' must be strings")
        await self.run(self.promotions.rollback, name, alias, reason, caller, event="rolled_back")


class HistoryHandler(PromotionRoute):
    async def get(self, name: str) -> None:
        self.require_user()
        await self.run(lambda: {"model": name, "events": self.promotions.history(name),
                                "promotions": self.promotions.promotions(name)})  # fmt: skip


def routes(url: Any) -> list[tuple[str, type[CatalogHandler]]]:
    model = r"api/models/([^/]+)"
    return [
        (url(f"{model}/promotions"), PromotionsHandler),
        (url(f"{model}/promotions/([0-9a-f]{{32}})/(approve|reject)"), DecisionHandler),
        (url(f"{model}/rollback"), RollbackHandler),
        (url(f"{model}/history"), HistoryHandler),
    ]
