"""PostgreSQL for real: the hub database and MLflow's backend store, as in kubernetes mode.

A PostgreSQL server runs in a temp dir for the session (tests/postgres.py). The hub and
MLflow connect as the chart makes them: a ``postgresql+psycopg2://user@host:port/db`` URL
and the password in ``PGPASSWORD``. MLflow runs the exact command and environment the
chart renders for its Deployment, only with local host, port and artifact directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from .chart import container_env, find, render
from .hub import BARE_HUB, HubProcess, free_port
from .postgres import PostgresServer, postgres_fixture  # noqa: F401

pytestmark = pytest.mark.hub

HUB_POLICY = (
    BARE_HUB
    + """
c.ProfileSpawner.profiles = [
    {"slug": "gpu", "toolchain": "scipy", "gpu_type": "nvidia-a100",
     "gpu": {"default": 1, "min": 1, "max": 2}, "cpu": 0.5, "memory": "512M",
     "groups": ["ml-research"]},
]
c.QuotaPolicy.default = {"servers": 1, "gpus": 0, "gpu_hours_per_week": 0}
c.QuotaPolicy.groups = {"ml-research": {"servers": 2, "gpus": 2, "gpu_hours_per_week": 10}}
c.QuotaPolicy.pools = {"nvidia-a100": 2}
c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1"]}
c.JupyterHub.load_groups = {"ml-research": {"users": ["alice"]}}
"""
)


def test_hub_state_lives_in_postgresql_across_a_restart(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    postgres.create_database("jupyterhub", "hub", "hub-password")
    url = postgres.url("jupyterhub", "hub")
    hub = HubProcess(tmp_path, HUB_POLICY + f"c.JupyterHub.db_url = {url!r}\n")
    hub.env["PGPASSWORD"] = "hub-password"
    hub.start(timeout=90)
    try:
        assert hub.spawn("alice", options={"profile": "gpu", "gpus": 2}).status_code in (201, 202)
        hub.wait_ready("alice", timeout=90)
        assert hub.usage("alice")["usage"]["gpus"] == 2
        # the hub's own tables and dsplatform's GPU sessions are in PostgreSQL, no SQLite file
        (state,) = postgres.query(
            "jupyterhub",
            "SELECT s.state FROM spawners s JOIN users u ON s.user_id = u.id WHERE u.name = %s",
            "alice",
        )
        assert json.loads(state[0])["dsplatform_grant"]["gpus"] == 2  # JupyterHub stores JSON text
        assert postgres.query(
            "jupyterhub", "SELECT gpus, stopped FROM dsplatform_gpu_sessions WHERE \"user\" = %s",
            "alice",
        ) == [(2, None)]  # fmt: skip
        assert not list(tmp_path.rglob("jupyterhub.sqlite"))

        hub.stop()  # the sandbox keeps running (cleanup_servers = False)
        hub.start(timeout=90)
        assert hub.server_model("alice")["ready"]
        after = hub.usage("alice")  # the grant came back from PostgreSQL
        assert after["usage"]["gpus"] == 2
        assert after["pools"]["nvidia-a100"]["used"] == 2
        refused = hub.spawn("alice", "second", {"profile": "gpu", "gpus": 1})
        assert refused.status_code == 403, refused.text  # the restored grant still counts
        assert refused.json()["message"] == (
            "GPU quota exceeded: ml-research allows 2 GPUs per user; running 2 + requested 1 = 3"
        )

        hub.stop_server("alice")
        assert hub.usage("alice")["usage"]["gpus"] == 0
        ((stopped,),) = postgres.query(
            "jupyterhub", "SELECT stopped FROM dsplatform_gpu_sessions WHERE \"user\" = %s",
            "alice",
        )  # fmt: skip
        assert stopped is not None
    finally:
        hub.shutdown()


def local_command(container: dict[str, Any], port: int, artifacts: Path) -> list[str]:
    """The rendered MLflow container command, made to run here: this Python's mlflow,
    127.0.0.1 and a free port, a local artifact directory, one worker."""
    command = [*container["command"], *container["args"]]
    assert command[:2] == ["mlflow", "server"]
    replace = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1"}
    replace["--artifacts-destination"] = str(artifacts)
    out = [sys.executable, "-m", "mlflow", "server"]
    args = command[2:]
    i = 0
    while i < len(args):
        if args[i] in replace:
            out += [args[i], replace[args[i]]]
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def test_mlflow_as_the_chart_runs_it_on_postgresql(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """The chart's MLflow Deployment, run here: its command, environment (secrets resolved)
    and auth ini, against a real PostgreSQL and a real hub that knows it by the rendered
    service token. Changed: host, port, artifact directory, workers, the ini's mount path and
    the hub API URL (the hub's Service name does not resolve here)."""
    postgres.create_database("tracking", "mlflow", "mlflow-password")
    objects = render(
        {
            "postgresql": {
                "deploy": False,
                "host": postgres.host,
                "port": postgres.port,
                "username": "mlflow",
                "password": "mlflow-password",
                "mlflowDatabase": "tracking",
            },
            "mlflow": {"sharingGroups": ["ml-research"]},
        }
    )
    (container,) = find(objects, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"]
    env = container_env(objects, container)
    assert env["PGPASSWORD"] == "mlflow-password"  # from the chart's Secret, never in a URL
    assert not any("mlflow-password" in arg for arg in container["args"])
    port = free_port()
    command = local_command(container, port, tmp_path / "artifacts")
    assert f"postgresql+psycopg2://mlflow@127.0.0.1:{postgres.port}/tracking" in command
    assert command[command.index("--app-name") + 1] == "dsplatform"
    ini = find(objects, "ConfigMap", "-mlflow-auth")["data"]["basic_auth.ini"]
    (tmp_path / "basic_auth.ini").write_text(ini)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/dsplatform-mlflow/basic_auth.ini"
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(tmp_path / "basic_auth.ini")

    # the hub MLflow asks who a token belongs to: it knows MLflow by the rendered token
    hub = HubProcess(tmp_path / "hub", HUB_POLICY + f"""
c.JupyterHub.load_groups = {{"ml-research": {{"users": ["alice", "carol"]}}}}
c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [
    {{"name": "mlflow", "api_token": {env["JUPYTERHUB_API_TOKEN"]!r}}}]
c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [
    {{"name": "chart-mlflow", "scopes": ["read:users"], "services": ["mlflow"]}}]
""").start()  # fmt: skip
    assert env["JUPYTERHUB_API_URL"].endswith(":8081/hub/api")
    env["JUPYTERHUB_API_URL"] = hub.api_url

    log = tmp_path / "mlflow.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            env={**server_env, **env},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            raise TimeoutError(log.read_text()[-4000:])

        # sandboxes reach it by its Service name; other Host headers are refused
        service = find(objects, "Service", "-mlflow")["metadata"]["name"]
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        alice = {"Authorization": f"Bearer {hub.token_for('alice')}"}
        assert requests.get(search, headers={"Host": f"{service}:5000", **alice}, timeout=10).ok
        assert (
            requests.get(search, headers={"Host": "evil.example.org", **alice}, timeout=10)
            .status_code == 403
        )  # fmt: skip
        # nothing without a hub token
        assert requests.get(search, timeout=10).status_code == 401

        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=url)
        with hub.mlflow_as("alice"):
            experiment = client.create_experiment("postgres-check")
            run = client.create_run(experiment)
            client.log_param(run.info.run_id, "lr", "0.05")
            client.log_metric(run.info.run_id, "auc", 0.91)
            model_dir = tmp_path / "model"
            model_dir.mkdir()
            (model_dir / "weights.txt").write_text("0.1 0.2\n")
            client.log_artifacts(run.info.run_id, str(model_dir), "model")
            client.set_terminated(run.info.run_id)
            client.create_registered_model("churn")
            version = client.create_model_version(
                "churn", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
            )
            client.set_registered_model_alias("churn", "staging", version.version)
            # production is the chart's protected alias: not even the owner moves it directly
            with pytest.raises(MlflowException) as refused:
                client.set_registered_model_alias("churn", "production", version.version)
            assert refused.value.error_code == "PERMISSION_DENIED"
        with hub.mlflow_as("bob"), pytest.raises(MlflowException) as denied:
            client.delete_run(run.info.run_id)  # bob reads, never changes alice's work
        assert denied.value.error_code == "PERMISSION_DENIED"
        with hub.mlflow_as("carol"):  # shares ml-research with alice: may edit
            client.set_tag(run.info.run_id, "reviewed-by", "carol")
        with hub.mlflow_as("bob"):
            assert client.get_model_version_by_alias("churn", "staging").run_id == run.info.run_id
            assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.91}
        # it is all in PostgreSQL (permissions too), and the artifacts went to its store
        assert postgres.query("tracking", "SELECT name FROM registered_models") == [("churn",)]
        assert postgres.query(
            "tracking", "SELECT key, value FROM params WHERE run_uuid = %s", run.info.run_id
        ) == [("lr", "0.05")]
        assert ("alice",) in postgres.query("tracking", "SELECT username FROM users")
        assert list((tmp_path / "artifacts").rglob("weights.txt"))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        hub.shutdown()
