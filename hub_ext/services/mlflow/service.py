"""The platform's MLflow tracking server: a hub-managed service, or one run elsewhere.

Local mode: ``mlflow server`` with a SQLite backend store and a proxied artifact store under
the state directory, bound to 127.0.0.1. Kubernetes mode: the Helm chart runs MLflow (on
PostgreSQL) as its own Deployment and the hub only points sandboxes at it
(``c.PlatformMLflow.external_url``). Either way sandboxes get the URL as
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Int, Unicode
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError


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

    external_url = Unicode(
        "",
        help="""URL of an MLflow tracking server the hub does not run (the Helm chart's
        MLflow Service). Sandboxes and the catalog service use it; the hub starts no MLflow
        of its own, so `enabled` must stay False.

            c.PlatformMLflow.external_url = "http://dsplatform-mlflow:5000"
        """,
    ).tag(config=True)


MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # halves start-up


def mlflow_server_command(base: Path, port: int, workers: int = 1) -> list[str]:
    """``mlflow server`` with a SQLite store and proxied artifacts under ``base``."""
    # fmt: off
    return [
        sys.executable, "-m", "mlflow", "server",
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


def mlflow_service(settings: PlatformMLflow) -> tuple[dict[str, Any], str]:
    """The hub service entry and the tracking URI sandboxes use.

    The service has no ``url``: the hub does not route it through the public proxy, since
    MLflow has no authentication of its own; sandboxes on this machine reach it directly.
    """
    base = Path(
        settings.state_dir
        or Path(os.environ.get("DSPLATFORM_STATE_DIR", ".dsplatform")).resolve() / "mlflow"
    )
    base.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{settings.port}"
    service = {
        "name": "mlflow",
        "command": mlflow_server_command(base, settings.port, settings.workers),
        "environment": dict(MLFLOW_SERVER_ENV),
    }
    return service, url


def check(c: Config) -> None:
    check_mlflow(PlatformMLflow(config=c))


def wire(c: Config) -> None:
    """Run MLflow as a hub service (local mode), or point sandboxes at an external one."""
    mlflow = PlatformMLflow(config=c)
    if mlflow.enabled:
        service, tracking_uri = mlflow_service(mlflow)
        services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != "mlflow"]
        c.JupyterHub.services = [*services, service]
        if not c.ProfileSpawner.get("mlflow_tracking_uri"):
            c.ProfileSpawner.mlflow_tracking_uri = tracking_uri
    elif mlflow.external_url and not c.ProfileSpawner.get("mlflow_tracking_uri"):
        c.ProfileSpawner.mlflow_tracking_uri = mlflow.external_url  # e.g. the chart's Service
