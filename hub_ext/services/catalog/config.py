"""How the hub runs the catalog service, and the roles and scopes it needs.

:class:`PlatformCatalog` (with :class:`~hub_ext.datasets.catalog.DatasetCatalog`) is the
one declaration of the service's settings: :func:`wire` hands every trait of both to the
service process (:mod:`hub_ext.services.handoff`), which builds the same classes from it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from traitlets import Bool, Int, List, Unicode
from traitlets.config import Config, Configurable

from hub_ext.connections.settings import DataConnections, load_connections
from hub_ext.connections.settings import check as check_connections
from hub_ext.datasets.catalog import DatasetCatalog, check_dataset_groups
from hub_ext.errors import ConfigError, check_service_addresses
from hub_ext.monitoring.settings import PlatformMonitoring
from hub_ext.monitoring.settings import check as check_monitoring
from hub_ext.services.catalog.governance import APPROVE_SCOPE, ModelGovernance
from hub_ext.services.catalog.governance import check as check_governance
from hub_ext.services.handoff import service_config
from hub_ext.services.mlflow.ui import has_web_ui
from hub_ext.services.serving.settings import ModelServing
from hub_ext.services.serving.settings import check as check_serving
from hub_ext.state import state_dir

SERVICE = "catalog"
PREDICT_SCOPE = "custom:dsplatform:predict"
ACCESS = f"access:services!service={SERVICE}"


class PlatformCatalog(Configurable):
    """The catalog service: datasets, models and the prediction gateway."""

    enabled = Bool(
        False,
        help="Run the catalog service as a hub-managed service (the embedded config does).",
    ).tag(config=True)

    port = Int(10101, help="Port of the catalog service.").tag(config=True)

    host = Unicode(
        "127.0.0.1",
        help="""Host name under which the proxy and sandboxes reach the catalog service (its
        hub service URL is http://HOST:PORT). On Kubernetes: the hub's Service name.

            c.PlatformCatalog.host = "dsplatform-hub"
        """,
    ).tag(config=True)

    bind_ip = Unicode(
        "",
        help="""Address the catalog service listens on; default: `host` (on Kubernetes
        "0.0.0.0", since the Service name is not an address of the hub pod).""",
    ).tag(config=True)

    predict_groups = List(
        Unicode(),
        ["product"],
        help="""Hub groups whose members may get tokens with the scope
        custom:dsplatform:predict (the prediction API).

            c.PlatformCatalog.predict_groups = ["product", "ml-research"]
        """,
    ).tag(config=True)

    max_request_bytes = Int(
        1 << 20, help="Largest prediction request body accepted (413 beyond)."
    ).tag(config=True)


def check_catalog(settings: PlatformCatalog) -> None:
    """Refuse a host or bind address that cannot be put into a URL."""
    check_service_addresses("PlatformCatalog", settings)


def catalog_service(c: Config, settings: PlatformCatalog, tracking_uri: str) -> dict[str, Any]:
    """The hub service entry of the catalog: its command, URL and handed-over settings."""
    handed_over = (PlatformCatalog, DatasetCatalog, ModelGovernance, ModelServing,
                   PlatformMonitoring, DataConnections)  # fmt: skip
    return {
        "name": SERVICE,
        "url": f"http://{settings.host}:{settings.port}",
        "command": [sys.executable, "-m", "hub_ext.services.catalog"],
        "environment": {
            **service_config(c, *handed_over),
            "MLFLOW_TRACKING_URI": tracking_uri,
            # the shared dataset cache: the catalog is its one writer (sandboxes read it)
            "DSDATA_CACHE_DIR": str(c.ProfileSpawner.get("dataset_cache_dir", "")),
            # its credential at the chart's serving Deployment; libpq's password
            **serving_secret(c),
            **database_password(c),
            # the connections' secrets: the catalog hands each only to its own imports
            **connection_secrets(c),
        },
        "display": True,
        "oauth_no_confirm": True,
        # a browser logged in to the catalog may use what its user's roles grant there
        "oauth_client_allowed_scopes": [PREDICT_SCOPE, APPROVE_SCOPE],
        "info": {"description": "Datasets, models and prediction APIs"},
    }


def serving_secret(c: Config) -> dict[str, str]:
    """``DSPLATFORM_SERVING_SECRET`` for a remote serving manager (the hub's environment)."""
    if not ModelServing(config=c).manager_url:
        return {}
    secret = os.environ.get("DSPLATFORM_SERVING_SECRET", "")
    if len(secret) < 16:
        raise ConfigError(
            "c.ModelServing.manager_url: the serving manager needs DSPLATFORM_SERVING_SECRET "
            "(16 or more characters) in the hub's environment"
        )
    return {"DSPLATFORM_SERVING_SECRET": secret}


def connection_secrets(c: Config) -> dict[str, str]:
    """The hub's environment variables each connection reads (all must be set)."""
    found = {}
    for conn in load_connections(DataConnections(config=c).connections).values():
        for name in conn.secret_env:
            if not os.environ.get(name):
                raise ConfigError(
                    f"c.DataConnections.connections[{conn.name!r}]: the hub's environment "
                    f"lacks {name}, which holds its credential"
                )
            found[name] = os.environ[name]
    return found


def database_password(c: Config) -> dict[str, str]:
    """``PGPASSWORD`` for a PostgreSQL promotion history (libpq reads it; no URL holds it)."""
    db_url = str(c.ModelGovernance.get("db_url", ""))
    if db_url.startswith("postgresql") and "PGPASSWORD" in os.environ:
        return {"PGPASSWORD": os.environ["PGPASSWORD"]}
    return {}


def catalog_roles(
    settings: PlatformCatalog, existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Roles: the service reads users' groups; users may open it; predict groups may predict."""
    ours = ("dsplatform-catalog", "dsplatform-predict", "dsplatform-approve")
    roles = [r for r in existing if r.get("name") not in ours]
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", ACCESS]})
    elif ACCESS not in user_role.get("scopes", []):
        user_role["scopes"] = [*user_role.get("scopes", ["self"]), ACCESS]
    roles.append(
        {
            "name": "dsplatform-catalog",
            "description": "The catalog service reads users' names and groups",
            "scopes": ["read:users:name", "read:users:groups"],
            "services": [SERVICE],
        }
    )
    roles.append(
        {
            "name": "dsplatform-approve",
            "description": "Approve, reject and roll back model promotions",
            "scopes": [APPROVE_SCOPE, ACCESS],
            "groups": list(ModelGovernance(config=settings.config).approver_groups),
        }
    )
    roles.append(
        {
            "name": "dsplatform-predict",
            "description": "Call the catalog's prediction APIs",
            "scopes": [PREDICT_SCOPE, ACCESS],
            "groups": list(settings.predict_groups),
        }
    )
    return roles


def check(c: Config) -> None:
    """Start-up checks of the catalog's settings (ConfigError naming the key)."""
    check_catalog(PlatformCatalog(config=c))
    check_dataset_groups(DatasetCatalog(config=c).dataset_groups)
    check_governance(c)
    check_serving(c)
    check_monitoring(c)
    check_connections(c)


def wire(c: Config) -> None:
    """Run the catalog as a hub service: its entry, scopes, roles and sandbox settings."""
    catalog = PlatformCatalog(config=c)
    if not catalog.enabled:
        return
    tracking_uri = c.ProfileSpawner.get("mlflow_tracking_uri", "")
    if not c.ModelGovernance.get("db_url"):  # the promotion history: the hub's PostgreSQL,
        hub_db = str(c.JupyterHub.get("db_url", ""))  # or a file next to the hub's state
        c.ModelGovernance.db_url = (
            hub_db
            if hub_db.startswith("postgresql")
            else f"sqlite:///{state_dir() / 'governance.sqlite'}"
        )
    if DataConnections(config=c).connections:  # imports land in a registry of the platform
        if not c.DataConnections.get("registry"):
            c.DataConnections.registry = str(state_dir() / "registries" / "imports")
        registries = list(c.DatasetCatalog.get("registries", []))
        if c.DataConnections.registry not in registries:
            c.DatasetCatalog.registries = [*registries, c.DataConnections.registry]
    if not c.ModelServing.get("root") and not c.ModelServing.get("manager_url"):
        c.ModelServing.root = str(state_dir() / "serving")  # served models' files, sockets
    services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != SERVICE]
    c.JupyterHub.services = [*services, catalog_service(c, catalog, tracking_uri)]
    c.JupyterHub.custom_scopes = {
        **c.JupyterHub.get("custom_scopes", {}),
        PREDICT_SCOPE: {"description": "Call the prediction APIs of the dsplatform catalog"},
        APPROVE_SCOPE: {"description": "Approve, reject and roll back model promotions"},
    }
    c.JupyterHub.load_roles = catalog_roles(catalog, list(c.JupyterHub.get("load_roles", [])))
    # sandboxes read the catalog with their server token
    scopes = list(c.Spawner.get("server_token_scopes", [])) or [
        "users:activity!user",
        "access:servers!server",
    ]
    if ACCESS not in scopes:
        c.Spawner.server_token_scopes = [*scopes, ACCESS]
    if not c.ProfileSpawner.get("catalog_url"):
        c.ProfileSpawner.catalog_url = (
            f"http://{catalog.host}:{catalog.port}/services/{SERVICE}/api/datasets"
        )
    if has_web_ui(tracking_uri) and not c.ProfileSpawner.get("mlflow_ui_url"):
        # the browser's way to MLflow: behind the hub login, through the public proxy
        # (public_url, when set, ends with the hub's base_url)
        base = str(c.JupyterHub.get("public_url", "") or c.JupyterHub.get("base_url", "/"))
        c.ProfileSpawner.mlflow_ui_url = f"{base.rstrip('/')}/services/{SERVICE}/mlflow/"
