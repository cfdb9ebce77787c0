"""The catalog service: discoverable datasets and models, and scoped prediction APIs.

A JupyterHub service (``python -m hub_ext.services.catalog.app``, started by the hub in local
mode), authenticated with ``HubOAuth``: browsers log in through the hub, programs send a hub
token. Under ``/services/catalog/``:

* ``GET api/datasets``: the registries' datasets the caller's groups may see (what sandboxes
  read through ``DSDATA_CATALOG_URL``);
* ``GET api/models``: registered models with versions, aliases, signatures, lineage, owner;
* ``POST api/models/{name}/{alias|version}/predict`` (or ``…/invocations``, MLflow's path):
  MLflow's scoring protocol (the four JSON formats, CSV, parquet, ``params``), answered by the
  version's serving worker (:mod:`hub_ext.services.serving`), never in this process; needs
  the custom scope ``custom:dsplatform:predict``;
* ``api/models/{name}/promotions``, ``…/rollback``, ``…/history``: four-eyes promotion
  (:mod:`hub_ext.services.catalog.promotion_handlers`);
* ``GET ping``, ``GET health``: liveness;
* ``GET api/models/{name}/{alias|version}/openapi.json``: the endpoint's OpenAPI, from the
  model's signature;
* ``GET /``: an HTML catalog with curl and Python examples;
* ``mlflow/``: the MLflow UI behind the hub login (:mod:`hub_ext.services.mlflow.ui`),
  the link sandboxes get as ``DSDATA_MLFLOW_UI_URL``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import httpclient, ioloop, web
from traitlets import Unicode, default
from traitlets.config import Application

from hub_ext.connections.registry import ImportRegistry, import_restrictions
from hub_ext.connections.settings import DataConnections, load_connections
from hub_ext.datasets.catalog import DatasetCatalog, check_dataset_groups
from hub_ext.monitoring.settings import PlatformMonitoring
from hub_ext.services.catalog import (
    connection_handlers,
    datasets,
    monitoring,
    promotion_handlers,
)
from hub_ext.services.catalog.config import PlatformCatalog
from hub_ext.services.catalog.datasets import DatasetFetcher
from hub_ext.services.catalog.gateway import ModelGateway, Serving
from hub_ext.services.catalog.governance import ModelGovernance
from hub_ext.services.catalog.handlers import (
    MAX_JSON_BODY,
    ModelsHandler,
    OpenAPIHandler,
    PageHandler,
    PingHandler,
    PredictHandler,
)
from hub_ext.services.catalog.model_registry import MLflowRegistry
from hub_ext.services.catalog.promotions import Promotions, Rules
from hub_ext.services.handoff import received_config
from hub_ext.services.mlflow.ui import MLflowUIHandler
from hub_ext.services.serving.files import ModelFiles
from hub_ext.services.serving.pool import WorkerPool
from hub_ext.services.serving.remote import RemoteServing
from hub_ext.services.serving.settings import ModelServing
from hub_ext.spawners.accounts import ensure_account
from server_ext.catalog import CachedListing
from server_ext.records import DatasetEntry

RESTRICTIONS_TTL = 10.0  # seconds the imported datasets' groups are reused


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
        self.static_dataset_groups = check_dataset_groups(self.datasets.dataset_groups)
        # imported datasets' groups, read from the import registry at most every few seconds
        # (and again after each import) instead of on every dataset request
        self._import_restrictions: tuple[float, dict[str, list[str]]] | None = None
        self.data_connections = DataConnections(config=self.config)
        self.connections = load_connections(self.data_connections.connections)
        registry = self.data_connections.registry or Path(tempfile.gettempdir()) / "imports"
        self.import_registry = ImportRegistry(Path(registry))
        self.max_request_bytes = self.catalog.max_request_bytes
        self.serving_settings = ModelServing(config=self.config)
        self.auth = HubOAuth(api_token=os.environ["JUPYTERHUB_API_TOKEN"], cache_max_age=60)
        metadata = Path(
            self.datasets.metadata_dir
            or Path(tempfile.gettempdir()) / "dsplatform-catalog-metadata"
        )
        metadata.mkdir(parents=True, exist_ok=True, mode=0o700)  # the hub's, not the users'
        self._listing = CachedListing(
            list(self.datasets.registries), metadata, self.datasets.refresh_seconds
        )
        cache = os.environ.get("DSDATA_CACHE_DIR") or str(metadata / "cache")
        self.fetcher = DatasetFetcher(Path(cache), metadata)
        self.governance = ModelGovernance(config=self.config)
        self.monitoring = PlatformMonitoring(config=self.config)
        self.promotions: Promotions | None = None  # made in start(): it opens the database
        self._groups: dict[str, tuple[float, list[str]]] = {}

    def serving_root(self) -> Path:
        default = Path(tempfile.gettempdir()) / "dsplatform-serving"
        return Path(self.serving_settings.root or default)

    def make_serving(self) -> Serving:
        """The serving workers: the chart's serving Deployment, or a pool on this machine
        (as the serving account when the catalog runs as root)."""
        settings = self.serving_settings
        if settings.manager_url:
            secret = os.environ.pop("DSPLATFORM_SERVING_SECRET", "")
            return RemoteServing(
                settings.manager_url, secret, settings.start_timeout, settings.request_timeout
            )
        root = self.serving_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        account = None
        if os.geteuid() == 0:
            account = ensure_account(
                settings.account,
                root / "work",
                "dsplatform model serving",
                settings.account_uid_range,
            )
        else:
            self.log.warning("dsplatform: not root, so serving workers run as this account")
        return WorkerPool(
            root, settings.max_workers, settings.start_timeout, settings.request_timeout, account
        )

    def make_promotions(self) -> Promotions | None:
        """The promotion flow over the platform's MLflow (None without one)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        governance = self.governance
        db_url = governance.db_url or f"sqlite:///{Path.cwd() / 'governance.sqlite'}"
        if db_url.startswith("sqlite:///"):  # the hub's alone, whatever the umask
            path = Path(db_url[len("sqlite:///") :])
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        rules = Rules(
            frozenset(governance.protected_aliases),
            governance.gate_metric,
            governance.gate_metric_direction,
        )
        registry = MLflowRegistry(self.tracking_uri, os.environ.get("JUPYTERHUB_API_TOKEN", ""))
        return Promotions(db_url, registry, rules)

    def listen_address(self) -> tuple[str, int]:
        """``bind_ip`` (e.g. 0.0.0.0 in a pod) or the service URL's host, and its port."""
        url = urlparse(self.service_url)
        return self.catalog.bind_ip or url.hostname or "127.0.0.1", url.port or 80

    async def dataset_entries(self) -> list[DatasetEntry]:
        return await self._listing.entries()

    @property
    def dataset_groups(self) -> dict[str, Sequence[str]]:
        """Who may see which dataset: the admin's ``dataset_groups``, and each imported
        dataset's connection groups."""
        cached = self._import_restrictions
        if cached is None or time.monotonic() - cached[0] > RESTRICTIONS_TTL:
            found = import_restrictions(self.import_registry.root, self.connections)
            cached = self._import_restrictions = (time.monotonic(), found)
        return {**cached[1], **self.static_dataset_groups}

    def import_sources(self) -> dict[str, str]:
        """Imported dataset -> its connection."""
        if not (self.import_registry.root / "imports").is_dir():
            return {}
        return self.import_registry.sources()

    def dataset_listing_changed(self) -> None:
        """An import registered a version: list the registries again on the next call."""
        self._listing.invalidate()
        self._import_restrictions = None

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
            *datasets.routes(self, lambda path: url_path_join(p, path)),
            (url_path_join(p, "api/models"), ModelsHandler),
            *promotion_handlers.routes(lambda path: url_path_join(p, path)),
            (
                url_path_join(p, r"api/models/([^/]+)/([^/]+)/(?:predict|invocations)"),
                PredictHandler,
            ),
            (url_path_join(p, "(ping|health)"), PingHandler),
            *monitoring.routes(lambda path: url_path_join(p, path)),
            *connection_handlers.routes(lambda path: url_path_join(p, path)),
            (url_path_join(p, r"api/models/([^/]+)/([^/]+)/openapi.json"), OpenAPIHandler),
            (url_path_join(p, "mlflow"), web.RedirectHandler, {"url": url_path_join(p, "mlflow/")}),
            (url_path_join(p, "mlflow/(.*)"), MLflowUIHandler, {"tracking_uri": self.tracking_uri}),
        ]
        return web.Application(
            routes,
            catalog=self,
            hub_auth=self.auth,
            cookie_secret=os.urandom(32),
            max_body_bytes=max(self.max_request_bytes, MAX_JSON_BODY),
        )

    def start(self) -> None:
        self.serving = self.make_serving()  # creates the serving account, directories
        self.promotions = self.make_promotions()
        root = self.serving_root()
        self.gateway = ModelGateway(
            self.tracking_uri, self.serving, ModelFiles(root / "models", self.tracking_uri)
        )
        if self.connections:  # the imports' registry exists before the first listing
            with self.import_registry.locked():
                pass
        self.monitor = monitoring.DriftMonitor(self, self.monitoring)
        self.monitor.start()
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
        loop = ioloop.IOLoop.current()
        for signum in (signal.SIGINT, signal.SIGTERM):  # the hub stops services with these
            signal.signal(signum, lambda *_: loop.add_callback_from_signal(loop.stop))
        try:
            loop.start()
        finally:
            self.serving.close()
            self.log.info("dsplatform catalog stopped")


def main() -> None:
    # the shared cache's objects and directories are read by every sandbox account
    os.umask(0o022)
    # MLflow knows the catalog by its hub token (a trusted service: an MLflow admin); every
    # call it makes is short, and never retried for minutes
    os.environ["MLFLOW_TRACKING_TOKEN"] = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    app = CatalogService()
    app.initialize()
    app.start()
