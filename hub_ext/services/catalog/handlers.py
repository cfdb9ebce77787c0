"""The catalog's handlers for models, predictions, OpenAPI and the HTML page, and their
base (:class:`CatalogHandler`: the hub user and their groups, JSON answers and errors).
The dataset routes are in :mod:`hub_ext.services.catalog.datasets`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.utils import url_path_join
from tornado import web

from hub_ext.datasets.catalog import visible
from hub_ext.monitoring.gateway_metrics import predicted_rows
from hub_ext.services.catalog.config import PREDICT_SCOPE
from hub_ext.services.catalog.errors import CatalogError
from hub_ext.services.catalog.openapi import model_openapi
from hub_ext.services.handler import HubServiceHandler
from hub_ext.services.mlflow.ui import has_web_ui

if TYPE_CHECKING:
    from hub_ext.services.catalog.app import CatalogService

MAX_JSON_BODY = 64 * 1024  # promotion and dataset requests are small
_jinja = Environment(
    # ours first, then the hub's own (page.html: navigation bar, login, theme)
    loader=FileSystemLoader(
        [str(Path(__file__).parent / "templates"), os.path.join(DATA_FILES_PATH, "templates")]
    ),
    autoescape=select_autoescape(["html"]),
)


class HubPageUser:
    """The hub user as the hub's page template reads it."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.name = str(model.get("name", ""))
        self.json_escaped_name = json.dumps(self.name)[1:-1]
        self.admin = bool(model.get("admin"))

    def __getitem__(self, key: str) -> Any:  # the page's own dict-style reads
        return getattr(self, key)


def hub_page_context(user: dict[str, Any]) -> dict[str, Any]:
    """What JupyterHub's ``page.html`` needs, with links into the hub."""
    hub = url_path_join(os.environ.get("JUPYTERHUB_BASE_URL", "/"), "hub/")

    def static_url(path: str, include_version: bool = True) -> str:
        return url_path_join(hub, "static", path)

    return {
        "base_url": hub,
        "prefix": os.environ.get("JUPYTERHUB_BASE_URL", "/"),
        "static_url": static_url,
        "login_url": url_path_join(hub, "login"),
        "logout_url": url_path_join(hub, "logout"),
        "parsed_scopes": set(user.get("scopes", [])),
        "services": [],
        "no_spawner_check": True,
        "version_hash": "",
        "xsrf_token": "",
        "announcement": "",
    }


class CatalogHandler(HubServiceHandler):
    """Base: the hub user (token or OAuth cookie), their groups, JSON errors."""

    @property
    def app(self) -> CatalogService:
        app: CatalogService = self.settings["catalog"]
        return app

    def require_user(self) -> dict[str, Any]:
        user: dict[str, Any] | None = self.current_user
        if user is None:
            raise web.HTTPError(
                401,
                "Authentication required: a hub token (Authorization: token ...) with "
                "access to the catalog service",
            )
        return user

    async def groups_of(self, user: dict[str, Any]) -> list[str]:
        if "groups" in user:
            return list(user["groups"])
        return await self.app.groups_of(user["name"])

    def _handle_request_exception(self, e: BaseException) -> None:
        """A :class:`CatalogError` answers with its status (tornado makes others 500)."""
        if isinstance(e, CatalogError) and not self._finished:
            self.send_error(e.status, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, CatalogError):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": exc.message, "error_code": exc.error_code}))
            return
        super().write_error(status_code, **kwargs)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    async def in_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    def json_body(
        self, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The request's JSON object with only ``allowed`` keys (400 with the reason)."""
        self.check_body()
        raw = self.body or b"{}"
        if len(raw) > MAX_JSON_BODY:
            raise web.HTTPError(413, f"A body of {len(raw)} bytes; at most {MAX_JSON_BODY}")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise web.HTTPError(400, "The request body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field {unknown[0][:40]!r}; allowed: {', '.join(sorted(allowed))}"
            )
        missing = sorted(required - set(body))
        if missing:
            raise web.HTTPError(400, f"Missing field {missing[0]!r}")
        return body


class ModelsHandler(CatalogHandler):
    async def get(self) -> None:
        self.require_user()
        try:
            models = await self.in_thread(self.app.gateway.models)
        except Exception as e:
            raise CatalogError(502, f"Cannot read the model registry: {str(e)[:300]}") from None
        self.write_json({"models": models})


class ModelRefHandler(CatalogHandler):
    async def version_of(self, name: str, ref: str) -> str:
        return str(await self.in_thread(self.app.gateway.resolve, name, ref))


class PredictHandler(ModelRefHandler):
    """``POST …/{name}/{alias|version}/predict`` and MLflow's ``…/invocations``; every call
    is counted (:mod:`hub_ext.monitoring.gateway_metrics`) and answered inputs are sampled
    for drift."""

    served = ("", "")  # (model, version) once the version is resolved
    rows = 0

    async def post(self, name: str, ref: str) -> None:
        user = self.require_user()
        if PREDICT_SCOPE not in set(user.get("scopes", [])):
            groups = ", ".join(repr(g) for g in self.app.catalog.predict_groups) or "none"
            raise web.HTTPError(
                403,
                f"This token lacks the scope {PREDICT_SCOPE}, which the hub grants to members "
                f"of the group(s) {groups}: as a member, create a token with that scope "
                "(/hub/token, or POST /hub/api/users/NAME/tokens); otherwise ask an admin "
                "to add you to one of them",
            )
        self.check_body()
        body = self.body
        if len(body) > self.app.max_request_bytes:
            raise web.HTTPError(
                413,
                f"Request of {len(body)} bytes exceeds the limit of {self.app.max_request_bytes}",
            )
        version = await self.version_of(name, ref)
        self.served = (name, version)
        content_type = self.request.headers.get("Content-Type", "application/json")
        answer = await self.app.gateway.predict(name, version, body, content_type, self.in_thread)
        monitor = self.app.monitor
        if monitor.enabled and 200 <= answer.status < 300:
            self.rows = predicted_rows(answer.body)
            monitor.windows.offer(self.served, body, content_type)
        self.set_header("X-Model-Version", version)
        self.set_status(answer.status)
        self.set_header("Content-Type", "application/json")
        self.finish(answer.body)

    def on_finish(self) -> None:
        monitor = self.app.monitor
        if monitor.enabled:
            seconds = self.request.request_time()
            monitor.metrics.observe(*self.served, self.get_status(), seconds, self.rows)


class PingHandler(CatalogHandler):
    """``GET ping`` (MLflow's liveness path) and ``GET health``: no login needed, nothing
    about models or users in the answer."""

    def get(self, what: str) -> None:
        if what == "ping":
            self.finish("")
        else:
            self.write_json({"status": "ok", "serving_workers": len(self.app.serving.status())})


class OpenAPIHandler(ModelRefHandler):
    async def get(self, name: str, ref: str) -> None:
        self.require_user()
        version = await self.version_of(name, ref)
        info = await self.in_thread(self.app.gateway.info, name, version)
        base = url_path_join(self.app.prefix, "api/models", name, ref)
        self.write_json(model_openapi(name, ref, version, info.signature, base))


class PageHandler(CatalogHandler):
    @web.authenticated
    async def get(self) -> None:
        user: dict[str, Any] = self.current_user
        groups = await self.groups_of(user)
        datasets = visible(await self.app.dataset_entries(), groups, self.app.dataset_groups)
        try:
            models = await self.in_thread(self.app.gateway.models)
            error = ""
        except Exception as e:
            models, error = [], f"The model registry is unreachable: {e}"
        governance: dict[str, Any] = {}
        promotions = self.app.promotions
        if promotions is not None:
            for m in models:
                try:
                    governance[m["name"]] = await self.in_thread(
                        lambda n=m["name"]: {
                            "pending": promotions.promotions(n, "pending"),
                            "history": promotions.history(n)[-10:],
                        }
                    )
                except CatalogError as e:  # the page still lists what it can
                    error = error or e.message
                    break
        examples = {}
        for m in models:
            latest = [v for v in m["versions"] if v["version"] == m["latest_version"]]
            if latest and latest[0]["signature"] and latest[0]["signature"].get("inputs"):
                columns = [c["name"] for c in latest[0]["signature"]["inputs"]]
                version = str(m["latest_version"])
                examples[m["name"]] = await self.in_thread(
                    self.app.gateway.example, m["name"], version, columns
                )
        monitor = self.app.monitor
        page = _jinja.get_template("catalog.html").render(
            **hub_page_context(user),
            calls={m["name"]: monitor.metrics.recent(m["name"]) for m in models},
            drift=monitor.last_reports(),
            examples=examples,
            governance=governance,
            user=HubPageUser(user),
            datasets=datasets,
            models=models,
            error=error,
            service_prefix=self.app.prefix,
            public_url=self.request.protocol + "://" + self.request.host,
            scope=PREDICT_SCOPE,
            mlflow_ui=has_web_ui(self.app.tracking_uri),
        )
        self.finish(page)
