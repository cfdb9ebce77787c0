"""The catalog service: discoverable datasets and models, and scoped prediction APIs.

A JupyterHub service (``python -m hub_ext.catalog_service``, started by the hub in local
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
* ``mlflow/``: the MLflow UI behind the hub login (``hub_ext.mlflow_ui``), the link sandboxes
  get as ``DSDATA_MLFLOW_UI_URL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import httpclient, ioloop, web
from traitlets import Dict, Float, Int, List, Unicode, default
from traitlets.config import Application

from server_ext.catalog import CachedListing

from .catalog_openapi import model_openapi, signature_columns
from .datasets import visible
from .hub_service_handler import HubServiceHandler
from .mlflow_ui import MLflowUIHandler, has_web_ui

PREDICT_SCOPE = "custom:dsplatform:predict"
_jinja = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
)


class ModelGateway:
    """Registered models, loaded once per version; aliases re-resolved every few seconds."""

    def __init__(self, tracking_uri: str, alias_ttl: float = 2.0, max_models: int = 8) -> None:
        self.tracking_uri = tracking_uri
        self.alias_ttl = alias_ttl
        self.max_models = max_models
        self._aliases: dict[tuple[str, str], tuple[float, str]] = {}
        self._models: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._info: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def resolve(self, name: str, ref: str) -> str:
        """The version number a ``ref`` (a version or an alias) names now."""
        if ref.isdigit():
            self.client().get_model_version(name, ref)  # raises when it does not exist
            return ref
        key = (name, ref)
        cached = self._aliases.get(key)
        if cached and time.monotonic() - cached[0] < self.alias_ttl:
            return cached[1]
        version = str(self.client().get_model_version_by_alias(name, ref).version)
        self._aliases[key] = (time.monotonic(), version)
        return version

    def model(self, name: str, version: str) -> Any:
        import mlflow.pyfunc

        key = (name, version)
        with self._lock:  # one load per version, even for simultaneous first requests
            if key not in self._models:
                self._models[key] = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return self._models[key]

    def info(self, name: str, version: str) -> Any:
        """The model's MLmodel metadata (signature), cached per version."""
        from mlflow.models import get_model_info

        key = (name, version)
        if key not in self._info:
            self._info[key] = get_model_info(f"models:/{name}/{version}")
        return self._info[key]

    def predict(self, name: str, version: str, body: bytes, content_type: str) -> tuple[int, str]:
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        model = self.model(name, version)
        try:
            response = scoring_server.invocations(
                body, content_type, model, model.metadata.get_input_schema()
            )
        except MlflowException as e:
            return e.get_http_status_code(), json.dumps(
                {"message": e.message, "error_code": e.error_code}
            )
        if response.mimetype != "application/json":
            return response.status, json.dumps({"message": str(response.response)})
        return response.status, str(response.response)

    def models(self) -> list[dict[str, Any]]:
        client = self.client()
        rows = []
        for registered in client.search_registered_models():
            versions = client.search_model_versions(f"name='{registered.name}'")
            entries = []
            for v in sorted(versions, key=lambda v: int(v.version)):
                try:
                    signature = self.info(registered.name, str(v.version)).signature
                except Exception:
                    signature = None
                entries.append(
                    {
                        "version": int(v.version),
                        "run_id": v.run_id,
                        "source": v.source,
                        "created": v.creation_timestamp,
                        "lineage": {
                            "run": (v.tags or {}).get("dsdata.run_id", v.run_id),
                            "git_sha": (v.tags or {}).get("dsdata.git_sha"),
                            "datasets": {
                                k[len("dsdata.dataset.") :]: val
                                for k, val in (v.tags or {}).items()
                                if k.startswith("dsdata.dataset.")
                            },
                        },
                        "signature": signature_columns(signature),
                    }
                )
            rows.append(
                {
                    "name": registered.name,
                    "description": registered.description or "",
                    "owner": (registered.tags or {}).get("dsdata.owner"),
                    "aliases": {a: int(v) for a, v in (registered.aliases or {}).items()},
                    "latest_version": max((e["version"] for e in entries), default=None),
                    "versions": entries,
                }
            )
        return sorted(rows, key=lambda r: r["name"])


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
        self.write_json({"datasets": visible(entries, groups, self.app.dataset_groups)})


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
        base = url_path_join(self.app.public_prefix, "api/models", name, ref)
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
            prefix=self.app.public_prefix,
            public_url=self.request.protocol + "://" + self.request.host,
            scope=PREDICT_SCOPE,
            mlflow_ui=has_web_ui(self.app.tracking_uri),
        )
        self.finish(page)


class CatalogService(Application):
    """The catalog service process."""

    name = "dsplatform-catalog"

    service_url = Unicode(help="Where to listen (JUPYTERHUB_SERVICE_URL).").tag(config=True)
    prefix = Unicode(help="URL prefix (JUPYTERHUB_SERVICE_PREFIX).").tag(config=True)
    tracking_uri = Unicode(help="MLflow tracking server (MLFLOW_TRACKING_URI).").tag(config=True)
    registries = List(Unicode(), help="DVC data registries.").tag(config=True)
    dataset_groups = Dict(help="dataset -> groups allowed.").tag(config=True)
    metadata_dir = Unicode(help="Registry metadata cache directory.").tag(config=True)
    max_request_bytes = Int(1 << 20, help="Largest prediction request accepted.").tag(config=True)
    refresh_seconds = Float(30.0, help="How long a registry listing is reused.").tag(config=True)

    @default("service_url")
    def _service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    @default("prefix")
    def _prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/catalog/")

    @default("tracking_uri")
    def _tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI", "")

    def _from_env(self) -> dict[str, Any]:
        settings: dict[str, Any] = json.loads(os.environ.get("DSPLATFORM_CATALOG", "{}"))
        return settings

    @default("registries")
    def _registries(self) -> list[str]:
        return list(self._from_env().get("registries", []))

    @default("dataset_groups")
    def _dataset_groups(self) -> dict[str, list[str]]:
        return dict(self._from_env().get("dataset_groups", {}))

    @default("metadata_dir")
    def _metadata_dir(self) -> str:
        return str(self._from_env().get("metadata_dir") or Path.cwd() / "catalog-metadata")

    @property
    def public_prefix(self) -> str:
        return self.prefix

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        self.gateway = ModelGateway(self.tracking_uri)
        self.auth = HubOAuth(api_token=os.environ["JUPYTERHUB_API_TOKEN"], cache_max_age=60)
        self._listing = CachedListing(
            list(self.registries), Path(self.metadata_dir), self.refresh_seconds
        )
        self._groups: dict[str, tuple[float, list[str]]] = {}

    async def dataset_entries(self) -> list[dict[str, Any]]:
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
        url = urlparse(self.service_url)
        app = self.make_app()
        # the server refuses huge bodies outright; the handler answers 413 above the limit
        app.listen(
            url.port or 80,
            url.hostname or "127.0.0.1",
            max_body_size=max(self.max_request_bytes * 4, 16 << 20),
        )
        self.log.info("dsplatform catalog at %s%s", self.service_url, self.prefix)
        ioloop.IOLoop.current().start()


def main() -> None:
    app = CatalogService()
    app.initialize()
    app.start()


if __name__ == "__main__":
    main()
