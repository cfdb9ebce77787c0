"""The catalog service: discoverable datasets and models, and scoped prediction APIs.

A JupyterHub service (``python -m hub_ext.services.catalog.app``, started by the hub in local
mode), authenticated with ``HubOAuth``: browsers log in through the hub, programs send a hub
token. Under ``/services/catalog/``:

* ``GET api/datasets``: the registries' datasets the caller's groups may see (what sandboxes
  read through ``DSDATA_CATALOG_URL``);
* ``GET api/models``: registered models with versions, aliases, signatures, lineage, owner;
* ``POST api/models/{name}/{alias|version}/predict``: MLflow's scoring formats
  (``dataframe_split``, ``dataframe_records``, ``inputs``, ``instances``) through MLflow's own
  scoring code; needs the custom scope ``custom:dsplatform:predict``;
* ``GET api/models/{name}/{alias|version}/openapi.json``: the endpoint's OpenAPI, from the
  model's signature;
* ``GET /``: an HTML catalog with curl and Python examples;
* ``mlflow/``: the MLflow UI behind the hub login (:mod:`hub_ext.services.mlflow.ui`),
  the link sandboxes get as ``DSDATA_MLFLOW_UI_URL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import httpclient, ioloop, web
from traitlets import Unicode, default
from traitlets.config import Application

from hub_ext.datasets.catalog import DatasetCatalog, check_dataset_groups, visible
from hub_ext.services.catalog.config import PREDICT_SCOPE, PlatformCatalog
from hub_ext.services.catalog.gateway import ModelGateway
from hub_ext.services.catalog.openapi import model_openapi
from hub_ext.services.handler import HubServiceHandler
from hub_ext.services.handoff import received_config
from hub_ext.services.mlflow.ui import MLflowUIHandler, has_web_ui
from server_ext.catalog import CachedListing
from server_ext.records import DatasetEntry

_jinja = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
)


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

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    async def in_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)


class DatasetsHandler(CatalogHandler):
    async def get(self) -> None:
        user = self.require_user()
        groups = await self.groups_of(user)
        entries = await self.app.dataset_entries()
        shown = visible(entries, groups, self.app.dataset_groups)
        self.write_json({"datasets": [entry.to_json() for entry in shown]})


class ModelsHandler(CatalogHandler):
    async def get(self) -> None:
        self.require_user()
        try:
            models = await self.in_thread(self.app.gateway.models)
        except Exception as e:
            raise web.HTTPError(502, f"Cannot read the model registry: {e}") from None
        self.write_json({"models": models})


class ModelRefHandler(CatalogHandler):
    async def version_of(self, name: str, ref: str) -> str:
        try:
            return str(await self.in_thread(self.app.gateway.resolve, name, ref))
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
                raise web.HTTPError(
                    404, f"No model {name!r} with version or alias {ref!r}"
                ) from None
            raise web.HTTPError(502, f"Cannot read the model registry: {e}") from None


class PredictHandler(ModelRefHandler):
    async def post(self, name: str, ref: str) -> None:
        user = self.require_user()
        if PREDICT_SCOPE not in set(user.get("scopes", [])):
            raise web.HTTPError(
                403, f"This token lacks the scope {PREDICT_SCOPE}; ask for a token with it"
            )
        body = self.request.body
        if len(body) > self.app.max_request_bytes:
            raise web.HTTPError(
                413,
                f"Request of {len(body)} bytes exceeds the limit of {self.app.max_request_bytes}",
            )
        version = await self.version_of(name, ref)
        content_type = self.request.headers.get("Content-Type", "application/json")
        status, payload = await self.in_thread(
            self.app.gateway.predict, name, version, body, content_type
        )
        self.set_header("X-Model-Version", version)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(payload)


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
        page = _jinja.get_template("catalog.html").render(
            user=user,
            datasets=datasets,
            models=models,
            error=error,
            prefix=self.app.prefix,
            public_url=self.request.protocol + "://" + self.request.host,
            scope=PREDICT_SCOPE,
            mlflow_ui=has_web_ui(self.app.tracking_uri),
        )
        self.finish(page)


class CatalogService(Application):
    """The catalog service process. Its settings are the hub's ``PlatformCatalog`` and
    ``DatasetCatalog``, handed over by the hub (:mod:`hub_ext.services.handoff`); where it
    listens and its URL prefix come from JupyterHub's service environment."""

    name = "dsplatform-catalog"

    service_url = Unicode(help="Where to listen (JUPYTERHUB_SERVICE_URL).").tag(config=True)
    prefix = Unicode(help="URL prefix (JUPYTERHUB_SERVICE_PREFIX).").tag(config=True)
    tracking_uri = Unicode(help="MLflow tracking server (MLFLOW_TRACKING_URI).").tag(config=True)

    @default("log_level")
    def _log_level(self) -> int:
        return logging.INFO  # where it listens and with which settings, in the hub's log

    @default("service_url")
    def _service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    @default("prefix")
    def _prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/catalog/")

    @default("tracking_uri")
    def _tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI", "")

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        self.update_config(received_config())
        self.catalog = PlatformCatalog(config=self.config)
        self.datasets = DatasetCatalog(config=self.config)
        self.dataset_groups = check_dataset_groups(self.datasets.dataset_groups)
        self.max_request_bytes = self.catalog.max_request_bytes
        self.gateway = ModelGateway(self.tracking_uri)
        self.auth = HubOAuth(api_token=os.environ["JUPYTERHUB_API_TOKEN"], cache_max_age=60)
        metadata = self.datasets.metadata_dir or str(
            Path(tempfile.gettempdir()) / "dsplatform-catalog-metadata"
        )
        self._listing = CachedListing(
            list(self.datasets.registries), Path(metadata), self.datasets.refresh_seconds
        )
        self._groups: dict[str, tuple[float, list[str]]] = {}

    def listen_address(self) -> tuple[str, int]:
        """``bind_ip`` (e.g. 0.0.0.0 in a pod) or the service URL's host, and its port."""
        url = urlparse(self.service_url)
        return self.catalog.bind_ip or url.hostname or "127.0.0.1", url.port or 80

    async def dataset_entries(self) -> list[DatasetEntry]:
        return await self._listing.entries()

    async def groups_of(self, name: str) -> list[str]:
        """A user's hub groups (the service's role may read them), cached 10 s."""
        cached = self._groups.get(name)
        if cached and time.monotonic() - cached[0] < 10:
            return cached[1]
        url = url_path_join(self.auth.api_url, "users", name)
        response = await httpclient.AsyncHTTPClient().fetch(
            url, headers={"Authorization": f"token {self.auth.api_token}"}
        )
        groups = list(json.loads(response.body).get("groups", []))
        self._groups[name] = (time.monotonic(), groups)
        return groups

    def make_app(self) -> web.Application:
        p = self.prefix
        routes = [
            (p, PageHandler),
            (url_path_join(p, "oauth_callback"), HubOAuthCallbackHandler),
            (url_path_join(p, "api/datasets"), DatasetsHandler),
            (url_path_join(p, "api/models"), ModelsHandler),
            (url_path_join(p, r"api/models/([^/]+)/([^/]+)/predict"), PredictHandler),
            (url_path_join(p, r"api/models/([^/]+)/([^/]+)/openapi.json"), OpenAPIHandler),
            (url_path_join(p, "mlflow"), web.RedirectHandler, {"url": url_path_join(p, "mlflow/")}),
            (url_path_join(p, "mlflow/(.*)"), MLflowUIHandler, {"tracking_uri": self.tracking_uri}),
        ]
        return web.Application(
            routes,
            catalog=self,
            hub_auth=self.auth,
            cookie_secret=os.urandom(32),
        )

    def start(self) -> None:
        host, port = self.listen_address()
        app = self.make_app()
        # the server refuses huge bodies outright; the handler answers 413 above the limit
        app.listen(port, host, max_body_size=max(self.max_request_bytes * 4, 16 << 20))
        self.log.info(
            "dsplatform catalog at http://%s:%s%s (registries refreshed every %ss)",
            host,
            port,
            self.prefix,
            self.datasets.refresh_seconds,
        )
        ioloop.IOLoop.current().start()


def main() -> None:
    app = CatalogService()
    app.initialize()
    app.start()
