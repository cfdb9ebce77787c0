"""Wire dsplatform into a JupyterHub configuration: ``configure(c)`` at the end of the file.

It validates the admin's profiles, toolchains, quotas and GPU devices (and stops the hub
with a message naming the key when something is wrong), registers the usage and dataset
APIs, and adds hub-managed services: the MLflow tracking server (local mode) and the
profile-aware idle culler with a least-privilege role.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import entry_points
from typing import Any, NoReturn

from traitlets.config import Config, Configurable

from .catalog_config import (
    ACCESS,
    PREDICT_SCOPE,
    SERVICE,
    PlatformCatalog,
    catalog_roles,
    catalog_service,
    check_catalog,
)
from .culler import PlatformIdleCulling, cull_interval
from .datasets import DatasetCatalog, check_dataset_groups
from .mlflow_service import PlatformMLflow, check_mlflow, mlflow_service
from .mlflow_ui import has_web_ui
from .policy import Policy, load_policy
from .profiles import ConfigError

CULLER_SERVICE = "dsplatform-idle-culler"
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def resolve_spawner_class(value: Any) -> type[Configurable]:
    """``c.JupyterHub.spawner_class`` as a class (entry-point name, dotted path or class)."""
    if isinstance(value, type):
        return value
    name = str(value or "dsplatform-local")
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == name:
            cls: type[Configurable] = ep.load()
            return cls
    module, _, attr = name.rpartition(".")
    if not module:
        raise ConfigError(f"c.JupyterHub.spawner_class: unknown spawner {name!r}")
    mod = __import__(module, fromlist=[attr])
    loaded: type[Configurable] = getattr(mod, attr)
    return loaded


def idle_timeouts(policy: Policy, culling: PlatformIdleCulling) -> dict[str, int]:
    """Every profile's effective idle timeout: its own, else the CPU or GPU default."""
    return {
        p.slug: p.idle_timeout
        if p.idle_timeout is not None
        else (culling.gpu_timeout if p.gpu.max > 0 else culling.timeout)
        for p in policy.profiles
    }


def stop_invalid(error: ConfigError) -> NoReturn:
    """Stop the hub at start-up with the message (it names the trait, key or variable)."""
    print(f"dsplatform: invalid configuration: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def configure(c: Config) -> Policy:
    """Validate and wire dsplatform into the hub config ``c``; exit(1) on invalid config."""
    try:
        spawner_class = resolve_spawner_class(c.JupyterHub.get("spawner_class"))
        policy = load_policy(c, spawner_class)
        check_dataset_groups(DatasetCatalog(config=c).dataset_groups)
        check_mlflow(PlatformMLflow(config=c))
        check_catalog(PlatformCatalog(config=c))
    except ConfigError as e:
        stop_invalid(e)

    from .datasets import DatasetsAPIHandler
    from .usage_api import UsageAPIHandler

    hub_routes = [
        (r"/api/dsplatform/usage", UsageAPIHandler),
        (r"/api/dsplatform/datasets", DatasetsAPIHandler),
    ]
    handlers = list(c.JupyterHub.get("extra_handlers", []))
    for handler in hub_routes:
        if handler not in handlers:
            handlers.append(handler)
    c.JupyterHub.extra_handlers = handlers

    if os.geteuid() == 0:
        # jupyterhub-singleuser refuses to run as root without this flag
        args = list(c.Spawner.get("args", []))
        if "--allow-root" not in args:
            c.Spawner.args = [*args, "--allow-root"]

    mlflow = PlatformMLflow(config=c)
    if mlflow.enabled:
        service, tracking_uri = mlflow_service(mlflow)
        services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != "mlflow"]
        c.JupyterHub.services = [*services, service]
        if not c.ProfileSpawner.get("mlflow_tracking_uri"):
            c.ProfileSpawner.mlflow_tracking_uri = tracking_uri
    elif mlflow.external_url and not c.ProfileSpawner.get("mlflow_tracking_uri"):
        c.ProfileSpawner.mlflow_tracking_uri = mlflow.external_url  # e.g. the chart's Service

    catalog = PlatformCatalog(config=c)
    if catalog.enabled:
        datasets = DatasetCatalog(config=c)
        services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != SERVICE]
        c.JupyterHub.services = [
            *services,
            catalog_service(
                catalog,
                registries=list(datasets.registries),
                dataset_groups=dict(datasets.dataset_groups),
                metadata_dir=datasets.metadata_dir,
                tracking_uri=c.ProfileSpawner.get("mlflow_tracking_uri", ""),
            ),
        ]
        c.JupyterHub.custom_scopes = {
            **c.JupyterHub.get("custom_scopes", {}),
            PREDICT_SCOPE: {"description": "Call the prediction APIs of the dsplatform catalog"},
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
        tracking_uri = c.ProfileSpawner.get("mlflow_tracking_uri", "")
        if has_web_ui(tracking_uri) and not c.ProfileSpawner.get("mlflow_ui_url"):
            # the browser's way to MLflow: behind the hub login, through the public proxy
            # (public_url, when set, ends with the hub's base_url)
            base = str(c.JupyterHub.get("public_url", "") or c.JupyterHub.get("base_url", "/"))
            c.ProfileSpawner.mlflow_ui_url = f"{base.rstrip('/')}/services/{SERVICE}/mlflow/"

    culling = PlatformIdleCulling(config=c)
    timeouts = idle_timeouts(policy, culling)
    if any(t > 0 for t in timeouts.values()):
        services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != CULLER_SERVICE]
        services.append(
            {
                "name": CULLER_SERVICE,
                "command": [
                    sys.executable,
                    "-m",
                    "hub_ext.culler",
                    f"--cull-every={cull_interval(timeouts, culling.timeout, culling.cull_every)}",
                    f"--timeout={culling.timeout}",
                ],
                "environment": {
                    "DSPLATFORM_IDLE_TIMEOUTS": json.dumps(timeouts),
                    "DSPLATFORM_IDLE_FALLBACK": str(culling.timeout),
                },
            }
        )
        c.JupyterHub.services = services
        roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != CULLER_SERVICE]
        roles.append(
            {"name": CULLER_SERVICE, "scopes": CULLER_SCOPES, "services": [CULLER_SERVICE]}
        )
        c.JupyterHub.load_roles = roles
    return policy
