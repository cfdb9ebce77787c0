"""How the hub runs the catalog service, and the roles and scopes it needs."""

from __future__ import annotations

import json
import sys
from typing import Any

from traitlets import Bool, Int, List, Unicode
from traitlets.config import Configurable

from .profiles import ConfigError

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
    for name in ("host", "bind_ip"):
        value = getattr(settings, name)
        if any(ch in value for ch in "/:@ ") or (name == "host" and not value):
            raise ConfigError(
                f"c.PlatformCatalog.{name}: {value!r} is not a host name or IPv4 address"
            )


def catalog_service(
    settings: PlatformCatalog,
    *,
    registries: list[str],
    dataset_groups: dict[str, Any],
    metadata_dir: str,
    tracking_uri: str,
) -> dict[str, Any]:
    """The hub service entry of the catalog."""
    command = [
        sys.executable,
        "-m",
        "hub_ext.catalog_service",
        f"--CatalogService.max_request_bytes={settings.max_request_bytes}",
    ]
    if settings.bind_ip and settings.bind_ip != settings.host:
        command.append(f"--CatalogService.service_url=http://{settings.bind_ip}:{settings.port}")
    return {
        "name": SERVICE,
        "url": f"http://{settings.host}:{settings.port}",
        "command": command,
        "environment": {
            "DSPLATFORM_CATALOG": json.dumps(
                {
                    "registries": registries,
                    "dataset_groups": dataset_groups,
                    "metadata_dir": metadata_dir,
                }
            ),
            "MLFLOW_TRACKING_URI": tracking_uri,
        },
        "display": True,
        "oauth_no_confirm": True,
        "info": {"description": "Datasets, models and prediction APIs"},
    }


def catalog_roles(
    settings: PlatformCatalog, existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Roles: the service reads users' groups; users may open it; predict groups may predict."""
    roles = [
        r for r in existing if r.get("name") not in ("dsplatform-catalog", "dsplatform-predict")
    ]
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
            "name": "dsplatform-predict",
            "description": "Call the catalog's prediction APIs",
            "scopes": [PREDICT_SCOPE, ACCESS],
            "groups": list(settings.predict_groups),
        }
    )
    return roles
