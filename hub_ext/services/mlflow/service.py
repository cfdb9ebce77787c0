"""The platform's MLflow tracking server: a hub-managed service, or one run elsewhere.

Local mode: ``mlflow server --app-name dsplatform`` (MLflow's auth app behind hub identity,
:mod:`hub_ext.services.mlflow.auth`) with a SQLite backend store, its permission database
and a proxied artifact store under the state directory (readable by the hub only), bound to
127.0.0.1. Every request needs a credential: sandboxes send their hub token
(``MLFLOW_TRACKING_TOKEN``), the catalog its service token. Kubernetes mode: the Helm chart
runs MLflow (on PostgreSQL) as its own Deployment and the hub only points sandboxes at it
(``c.PlatformMLflow.external_url``). Either way sandboxes get the URL as
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Int, List, Unicode
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError
from hub_ext.state import state_dir as platform_state


class PlatformMLflow(Configurable):
    """Where and how the hub runs MLflow (local mode)."""

    enabled = Bool(
        False,
        help="""Run `mlflow server` as a hub-managed service (the embedded local-mode config
        turns this on; on Kubernetes the chart runs MLflow).""",
    ).tag(config=True)

    port = Int(5000, help="Port of the MLflow server (127.0.0.1).").tag(config=True)

    state_dir = Unicode(
        "",
        help="MLflow's SQLite store and artifacts (default: $DSPLATFORM_STATE_DIR/mlflow).",
    ).tag(config=True)

    workers = Int(1, help="gunicorn/uvicorn workers of the MLflow server.").tag(config=True)

    default_permission = Unicode(
        "READ",
        help="""What every hub user may do with experiments, runs and models they do not own
        (MLflow's permissions: READ, EDIT, MANAGE, NO_PERMISSIONS). Owners (the creator) may
        manage theirs, admins everything.

            c.PlatformMLflow.default_permission = "READ"
        """,
    ).tag(config=True)

    sharing_groups = List(
        Unicode(),
        [],
        help="""Hub groups whose members may edit (not delete) each other's experiments, runs
        and models (an MLflow role per group).

            c.PlatformMLflow.sharing_groups = ["ml-research"]
        """,
    ).tag(config=True)

    external_url = Unicode(
        "",
        help="""URL of an MLflow tracking server the hub does not run (the Helm chart's
        MLflow Service). Sandboxes and the catalog service use it; the hub starts no MLflow
        of its own, so `enabled` must stay False.

            c.PlatformMLflow.external_url = "http://dsplatform-mlflow:5000"
        """,
    ).tag(config=True)


MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # halves start-up


def mlflow_server_command(
    base: Path, port: int, workers: int = 1, app_name: str | None = None
) -> list[str]:
    """``mlflow server`` with a SQLite store and proxied artifacts under ``base``."""
    app = ["--app-name", app_name] if app_name else []
    # fmt: off
    return [
        sys.executable, "-m", "mlflow", "server", *app,
        "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
        "--artifacts-destination", str(base / "artifacts"),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(workers),
    ]
    # fmt: on


def check_mlflow(settings: PlatformMLflow) -> None:
    """Refuse a hub-run MLflow and an external one at once, and a URL that is not http(s)."""
    if settings.external_url and settings.enabled:
        raise ConfigError(
            "c.PlatformMLflow: set either enabled (the hub runs MLflow) or external_url "
            "(MLflow runs elsewhere), not both"
        )
    if settings.external_url and not settings.external_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"c.PlatformMLflow.external_url: {settings.external_url!r} is not an http(s) URL"
        )


SERVICE = "mlflow"
ROLE = "dsplatform-mlflow"
ADMIN = "dsplatform-admin"  # MLflow's own admin account (basic auth; hub tokens for everyone)
TRUSTED_SERVICES = ("catalog",)  # hub services that act as MLflow admins


def kept_secret(path: Path) -> str:
    """A secret stored in ``path`` (created once, readable by the hub only)."""
    import secrets

    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def auth_environment(
    base: Path, settings: PlatformMLflow, protected_aliases: list[str]
) -> dict[str, str]:
    """MLflow's auth app configured for hub identity: its ini, secrets and the rules."""
    ini = base / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        f"default_permission = {settings.default_permission}\n"
        f"database_uri = sqlite:///{base / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = hub_ext.services.mlflow.auth:authenticate_request\n"
    )
    ini.chmod(0o600)
    rules = {
        "trusted_services": list(TRUSTED_SERVICES),
        "protected_aliases": list(protected_aliases),
        "sharing_groups": list(settings.sharing_groups),
    }
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": kept_secret(base / "admin_password"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": kept_secret(base / "flask_secret"),
        "DSPLATFORM_MLFLOW_AUTH": json.dumps(rules),
    }


def mlflow_service(
    settings: PlatformMLflow, protected_aliases: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """The hub service entry and the tracking URI sandboxes use.

    The service has no ``url``: the hub does not route it through the public proxy;
    sandboxes reach it directly, with their hub token.
    """
    base = Path(settings.state_dir or platform_state() / "mlflow")
    base.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{settings.port}"
    service = {
        "name": SERVICE,
        "command": mlflow_server_command(base, settings.port, settings.workers, "dsplatform"),
        "environment": {
            **MLFLOW_SERVER_ENV,
            **auth_environment(base, settings, protected_aliases or []),
        },
    }
    return service, url


def check(c: Config) -> None:
    check_mlflow(PlatformMLflow(config=c))


def wire(c: Config) -> None:
    """Run MLflow as a hub service (local mode), or point sandboxes at an external one."""
    from hub_ext.services.catalog.governance import ModelGovernance

    mlflow = PlatformMLflow(config=c)
    if mlflow.enabled:
        protected = list(ModelGovernance(config=c).protected_aliases)
        service, tracking_uri = mlflow_service(mlflow, protected)
        register_service(c, service)
        if not c.ProfileSpawner.get("mlflow_tracking_uri"):
            c.ProfileSpawner.mlflow_tracking_uri = tracking_uri
    elif mlflow.external_url:
        token = os.environ.get("DSPLATFORM_MLFLOW_SERVICE_TOKEN", "")
        if token:  # the chart's MLflow runs the same auth app, with this hub token
            register_service(c, {"name": SERVICE, "api_token": token})
        if not c.ProfileSpawner.get("mlflow_tracking_uri"):
            c.ProfileSpawner.mlflow_tracking_uri = mlflow.external_url  # e.g. the chart


def register_service(c: Config, service: dict[str, Any]) -> None:
    """The MLflow hub service and its role: it looks up who a token belongs to (name,
    admin flag, groups)."""
    services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != SERVICE]
    c.JupyterHub.services = [*services, service]
    roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != ROLE]
    c.JupyterHub.load_roles = [
        *roles,
        {"name": ROLE, "description": "MLflow checks hub tokens", "scopes": ["read:users"],
         "services": [SERVICE]},
    ]  # fmt: skip
