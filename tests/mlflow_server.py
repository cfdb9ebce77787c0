"""A real ``mlflow server`` process for the experiment tests, shared by the session.

SQLite backend store and a proxied artifact store in a temp dir, bound to 127.0.0.1 on a
free port. :meth:`MLflowServer.stop` and :meth:`MLflowServer.start` keep the port and the
store, so a test can take MLflow away (an outage) and bring the same server back.
A test module uses it with::

    from .mlflow_server import mlflow_server_fixture  # noqa: F401

and names it ``mlflow_server`` in its tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub_ext.services.mlflow.service import MLFLOW_SERVER_ENV, mlflow_server_command

from . import processes
from .hub import free_port


class MLflowServer:
    """One ``mlflow server`` with its own store; start/stop keep port and store."""

    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "mlflow.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90) -> MLflowServer:
        if self.running:
            return self
        command = mlflow_server_command(self.base, self.port)
        env = {**os.environ, **MLFLOW_SERVER_ENV}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = processes.launch(command, cwd=self.base, env=env, log_path=self.log_path)
        processes.wait_ready(
            self.proc, self.healthy, "mlflow server", timeout, self.log, on_timeout=self.stop
        )
        return self

    def healthy(self) -> bool:
        return processes.answers(f"{self.url}/health")

    def stop(self, timeout: float = 20) -> None:
        """Stop the server (its whole process group) and wait until the port is closed."""
        if self.proc is None:
            return
        processes.stop(self.proc, timeout)
        self.proc = None
        deadline = time.monotonic() + timeout
        while self.healthy() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log(self) -> str:
        return processes.log_tail(self.log_path, 6000)


_servers: dict[str, MLflowServer] = {}


@pytest.fixture(scope="session", name="mlflow_server")
def mlflow_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowServer]:
    """The session's MLflow server; a test that stops it must start it again.

    Imported into several modules the fixture is defined once per module; the server is
    still started once a session (memoised by the session's temp dir).
    """
    key = os.fspath(tmp_path_factory.getbasetemp())
    if key not in _servers:
        _servers[key] = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server = _servers[key].start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Project:
    """A fresh project directory (cwd) whose environment points at the session's MLflow."""

    root: Path
    tracking_uri: str
    dvc_remote: Path
    user: str = "alice"

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True
        ).stdout.strip()

    def head(self) -> str | None:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() or None

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    @property
    def experiment(self) -> str:
        return f"dsdata/{self.user}/{self.root.name}"

    def runs(self, filter_string: str = "") -> list[Any]:
        """Runs of this project's experiment (none when it does not exist yet)."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return []
        return list(client.search_runs([experiment.experiment_id], filter_string=filter_string))

    def remote_objects(self) -> set[str]:
        """md5s of the objects in the DVC remote directory."""
        base = self.dvc_remote / "files" / "md5"
        return {p.parent.name + p.name for p in base.glob("*/*") if p.is_file()}


RESOURCES = {"cpu": 1.0, "memory": "1G", "gpus": 0, "gpu_type": None, "disk": None}


@pytest.fixture(name="project")
def project_fixture(
    mlflow_server: MLflowServer,
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Project:
    """A fresh project dir as cwd; env as in a sandbox of alice (cpu-small) plus the registry.

    Needs the ``registry`` fixture (``from .registries import registry_fixture``).
    """
    root = tmp_path / tmp_path.name.replace("_", "-")  # names the MLflow experiment
    root.mkdir()
    remote = tmp_path / "dvc-remote"
    for name in (
        "DSDATA_CATALOG_URL", "DSPLATFORM_WORKSPACE", "DSDATA_LINK_TYPES",
        "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY", "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DSDATA_DVC_REMOTE", os.fspath(remote))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("DSPLATFORM_PROFILE", "cpu-small")
    monkeypatch.setenv("DSPLATFORM_RESOURCES", json.dumps(RESOURCES))
    monkeypatch.setenv("DSDATA_REGISTRIES", os.fspath(registry.path))
    monkeypatch.setenv("DSDATA_CACHE_DIR", os.fspath(tmp_path / "cache"))
    monkeypatch.chdir(root)
    return Project(root, mlflow_server.url, remote)
