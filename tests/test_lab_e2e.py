"""The Data & Models sidebar end to end: a real ``jupyter lab`` (this environment's, with the
installed labextension and server_ext) over a temp project, two real DVC registries and the
session's ``mlflow server``, driven in Debian's chromium by ``labextension/ui-tests/e2e.mjs``
(playwright-core).

The browser opens the sidebar, pulls two datasets (one with visible download progress),
sees them in the file browser, sees a local edit as "modified" and a pull refused for it,
commits an experiment (after a refused bad metric), publishes a model from a path and from
a run, and finds the commands in the palette. Screenshots go to
``test-artifacts/lab-e2e/`` (git-ignored). Afterwards the test checks the effects behind
the UI: files, git, MLflow runs and the Model Registry. A second test opens the sidebar of a
sandbox spawned by the real hub, through its proxy under ``/user/alice/``, and pulls there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from . import processes
from .hub import REPO, HubProcess, free_port
from .mlflow_server import RESOURCES, MLflowServer, mlflow_server_fixture  # noqa: F401
from .registries import (  # noqa: F401  (fixtures)
    GTO_FILES,
    Registry,
    big_registry_fixture,
    dvc_site_cache_fixture,
    expected_tree,
    gto_registry_fixture,
    md5_tree,
    registry_fixture,
    release,
)

pytestmark = pytest.mark.lab

LABEXTENSION = REPO / "labextension"
ARTIFACTS = REPO / "test-artifacts" / "lab-e2e"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class JupyterLab:
    """``jupyter lab`` of this environment on a free port, token auth, its own dirs."""

    def __init__(self, root: Path, home: Path, env: dict[str, str]) -> None:
        self.root = root
        self.home = home
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = home / "jupyter-lab.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> JupyterLab:
        settings = self.home / "lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # no "fetch the news?" question in the way of the test's notifications
        (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {
            **self.env,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),  # no user config
            "JUPYTER_DATA_DIR": str(self.home / "data"),  # no user labextensions
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(self.home / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.home / "workspaces"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        command = [
            str(Path(sys.executable).parent / "jupyter-lab"),
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        self.proc = processes.launch(command, cwd=self.root, env=env, log_path=self.log_path)
        headers = {"Authorization": f"token {self.token}"}
        processes.wait_ready(
            self.proc,
            lambda: processes.answers(f"{self.url}api/status", headers=headers),
            "jupyter lab",
            timeout,
            self.log,
            interval=0.3,
            on_timeout=self.stop,
        )
        return self

    def stop(self, timeout: float = 30) -> None:
        processes.stop(self.proc, timeout)

    def log(self) -> str:
        return processes.log_tail(self.log_path, 8000)


def pickled_model(path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(30, 2)), columns=["x1", "x2"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(LinearRegression().fit(X, X["x1"] * 2 - 1), f)


@contextlib.contextmanager
def jupyter_lab(
    tmp_path: Path, mlflow_server: MLflowServer, registries: list[Registry]
) -> Iterator[JupyterLab]:
    """JupyterLab over a fresh project with a sandbox's environment (user alice)."""
    root = tmp_path / "lab-e2e-project"  # names the MLflow experiment
    root.mkdir()
    (root / "train.py").write_text("# trains a line\n")
    pickled_model(root / "model" / "model.pkl")
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DSDATA_CATALOG_URL", "DSPLATFORM_WORKSPACE", "DSDATA_LINK_TYPES",
            "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "MLFLOW_TRACKING_TOKEN",
            "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID",
        }
    }  # fmt: skip
    env.update(
        MLFLOW_TRACKING_URI=mlflow_server.url,
        DSDATA_DVC_REMOTE=str(tmp_path / "dvc-remote"),
        DSDATA_REGISTRIES=",".join(r.url for r in registries),
        DSDATA_CACHE_DIR=str(tmp_path / "cache"),
        JUPYTERHUB_USER="alice",
        DSPLATFORM_PROFILE="cpu-small",
        DSPLATFORM_RESOURCES=json.dumps(RESOURCES),
    )
    home = tmp_path / "lab-home"
    home.mkdir()
    server = JupyterLab(root, home, env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(
    tmp_path: Path, mlflow_server: MLflowServer, registry: Registry, big_registry: Registry
) -> Iterator[JupyterLab]:
    """JupyterLab over the two DVC registries of the e2e story."""
    with jupyter_lab(tmp_path, mlflow_server, [registry, big_registry]) as server:
        yield server


@pytest.fixture
def gto_lab(
    tmp_path: Path, mlflow_server: MLflowServer, gto_registry: Registry
) -> Iterator[JupyterLab]:
    """JupyterLab over the registry made with the ``dvc`` and ``gto`` CLIs."""
    with jupyter_lab(tmp_path, mlflow_server, [gto_registry]) as server:
        yield server


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """``test-artifacts/lab-e2e/``, emptied once per run of this module."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def run_node(script: str, env: dict[str, str], log: str) -> subprocess.CompletedProcess[str]:
    """Run a ``labextension/ui-tests`` script; its output is printed and kept as ``log``."""
    node = shutil.which("node")
    assert node, "node is needed for the browser test (scripts/bootstrap needs it too)"
    assert (LABEXTENSION / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core is missing: run scripts/bootstrap (npm ci in labextension/)"
    )
    assert Path(CHROMIUM).exists(), "chromium is missing: run scripts/system-deps"
    proc = subprocess.run(
        [node, f"ui-tests/{script}"],
        cwd=LABEXTENSION,
        env={**os.environ, **env, "ARTIFACTS": str(ARTIFACTS), "CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    (ARTIFACTS / log).write_text(output)
    print(output)  # shown by pytest on failure (and with -s)
    return proc


def hub_story(script: str, hub: HubProcess, env: dict[str, str], user: str = "alice") -> Any:
    """A ``ui-tests`` story in ``user``'s sandbox of ``hub`` (logged in through the hub's
    form with the shared password): the story's ``SUMMARY`` object, or a failure with its
    output and the hub's log."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    password = (hub.state / "platform" / "user_password").read_text().strip()
    story = {"HUB_URL": hub.url, "HUB_USER": user, "HUB_PASSWORD": password, **env}
    proc = run_node(script, story, script.replace(".mjs", ".log"))
    assert proc.returncode == 0, (
        f"{script} failed (screenshots in {ARTIFACTS}):\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-2000:]}\n--- hub log ---\n{hub.log()}"
    )
    return json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])


def test_sidebar_pull_commit_publish_in_chromium(
    lab: JupyterLab,
    mlflow_server: MLflowServer,
    registry: Registry,
    big_registry: Registry,
    artifacts: Path,
) -> None:
    installed = Path(sys.prefix) / "share/jupyter/labextensions/dsplatform-labextension"
    assert (installed / "package.json").exists(), "run scripts/bootstrap: the labextension"

    env = {"LAB_URL": lab.url, "LAB_TOKEN": lab.token, "MLFLOW_URL": mlflow_server.url}
    proc = run_node("e2e.mjs", env, "e2e.log")
    assert proc.returncode == 0, (
        f"the browser story failed (screenshots in {ARTIFACTS}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n--- jupyter lab log ---\n{lab.log()}"
    )
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    shots = sorted(p.name for p in ARTIFACTS.glob("[0-9]*.png"))
    assert not (ARTIFACTS / "failure.png").exists() and len(shots) >= 10, shots

    # what the UI did, seen from behind it: files, lineage, git, MLflow, the registry
    root = lab.root
    assert md5_tree(root / "data" / "iris") == expected_tree(release("iris", "v1.1.0"))
    assert len(md5_tree(root / "data" / "big")) == 50
    assert "has local changes (1 file(s): iris.csv)" in summary["conflict"]
    assert "Metric auc='high' is not a number" in summary["badMetric"]

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    run = client.get_run(summary["runId"])
    assert run.data.params == {"lr": "0.1", "depth": "3"}
    assert run.data.metrics == {"auc": 0.875}
    assert run.data.tags["mlflow.runName"] == "e2e: first run"
    assert run.data.tags["dsdata.dataset.iris"] == f"v1.1.0@{registry.rev('iris@v1.1.0')}"
    assert run.data.tags["dsdata.dataset.big"] == f"v2.0.0@{big_registry.rev('big@v2.0.0')}"
    head = subprocess.run(
        ["git", "log", "-1", "--format=%H %s"], cwd=root, capture_output=True, text=True
    ).stdout.split(" ", 1)
    assert head == [run.data.tags["dsdata.git_sha"], "e2e: first run\n"]
    assert (root / "model.dvc").exists()  # the commit's output went to DVC

    versions = {v.version: v for v in client.search_model_versions("name='iris-e2e'")}
    assert sorted(versions) == ["1", "2"]
    model = client.get_registered_model("iris-e2e")
    assert model.aliases == {"staging": "1", "production": "2"}
    # version 2 came from the run that published version 1 (the run's model)
    assert versions["2"].tags["dsdata.run_id"] == versions["1"].tags["dsdata.run_id"]
    assert versions["1"].tags["dsdata.git_sha"] == run.data.tags["dsdata.git_sha"]


@pytest.mark.hub
def test_sidebar_in_a_hub_sandbox_through_the_proxy(clean_hub: HubProcess, artifacts: Path) -> None:
    """The sidebar of a sandbox that the hub spawned (cpu-small preloads iris@v1), under
    ``/user/alice/`` behind configurable-http-proxy: logged in through the hub's form."""
    from mlflow import MlflowClient

    hub = clean_hub
    experiment = f"through-the-hub-{int(time.time())}"
    with hub.mlflow_as("alice"):
        MlflowClient(hub.wait_mlflow()).create_experiment(experiment)
    assert hub.spawn("alice", "", {"profile": "cpu-small"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=120)
    env = {
        "HUB_URL": hub.url,
        "HUB_USER": "alice",
        "HUB_PASSWORD": (hub.state / "platform" / "user_password").read_text().strip(),
        "PRELOADED": "iris",
        "PULL": "churn",  # restricted to ml-research, which alice is in
        "EXPERIMENT": experiment,  # the MLflow UI, behind the hub's login, lists it
    }
    proc = run_node("hub-sandbox.mjs", env, "hub-sandbox.log")
    assert proc.returncode == 0, (
        f"the browser story in the hub sandbox failed (screenshots in {ARTIFACTS}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n--- hub log ---\n{hub.log()}"
    )
    workspace = hub.state / "platform" / "users" / "alice"
    assert (workspace / "data" / "churn").is_dir(), sorted(workspace.rglob("*"))[:20]


def test_a_commit_from_a_notebook_records_the_cells_that_ran(
    lab: JupyterLab, mlflow_server: MLflowServer, artifacts: Path
) -> None:
    """Cells run in a new notebook, then ``%dsdata commit`` without saving: the kernel has
    the frontend save first, so the commit holds the cells and their outputs."""
    env = {"LAB_URL": lab.url, "LAB_TOKEN": lab.token}
    proc = run_node("notebook-commit.mjs", env, "notebook-commit.log")
    assert proc.returncode == 0, (
        f"the notebook story failed (screenshots in {ARTIFACTS}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n--- jupyter lab log ---\n{lab.log()}"
    )
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    assert "saved Untitled.ipynb" in summary["commit"], summary
    committed = subprocess.run(
        ["git", "show", "HEAD:Untitled.ipynb"], cwd=lab.root, capture_output=True, text=True
    )
    assert committed.returncode == 0, committed.stderr
    cells = json.loads(committed.stdout)["cells"]
    sources = ["".join(c["source"]) for c in cells]
    assert sources[0] == "x = 41 + 1\nprint('trained', x)", sources
    outputs = "".join("".join(o.get("text", "")) for o in cells[0]["outputs"])
    assert outputs == "trained 42\n", cells[0]["outputs"]
    from mlflow import MlflowClient

    match = re.search(r"\(run ([0-9a-f]{32})\)", summary["commit"])
    assert match, summary
    run = MlflowClient(mlflow_server.url).get_run(match.group(1))
    assert run.data.tags["mlflow.runName"] == "from the notebook"


def test_the_sidebar_shows_a_gto_registry_as_gto_does(gto_lab: JupyterLab, artifacts: Path) -> None:
    """Single-file, nested ``DIR:NAME``, directory and undescribable datasets in the
    sidebar (``ui-tests/gto-sidebar.mjs``), and pulls of the files to ``data/<file>``."""
    proc = run_node("gto-sidebar.mjs", {"LAB_URL": gto_lab.url, "LAB_TOKEN": gto_lab.token},
                    "gto-sidebar.log")  # fmt: skip
    assert proc.returncode == 0, (
        f"the GTO sidebar story failed (screenshots in {ARTIFACTS}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n--- jupyter lab log ---\n{gto_lab.log()}"
    )
    summary = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    # what `gto show` lists as datasets; the deprecated one and the model are not there
    assert sorted(summary["names"]) == ["broken", "images", "sub:feats", "table"], summary
    rows = summary["rows"]
    assert "one file" in rows["table"] and "versions: v1.1.0-rc.1, v1.0.0" in rows["table"]
    assert "stages: prod → v1.0.0" in rows["table"]  # staging was unassigned
    assert "one file" in rows["sub:feats"] and "versions: v1.0.0" in rows["sub:feats"]
    assert "v2.0.0" not in rows["sub:feats"]  # deregistered
    assert "in 2 files" in rows["images"] and "dev → v1.0.0" in rows["images"]
    assert "Unavailable:" in rows["broken"], rows["broken"]
    assert summary["versions"]["table"] == ["", "v1.1.0-rc.1", "v1.0.0", "prod"], summary
    assert summary["proposed"] == {"table": "data/table.csv", "sub:feats": "data/feats.csv"}
    assert (gto_lab.root / "data" / "table.csv").read_bytes() == GTO_FILES["table"]["v1.0.0"]
    feats = (gto_lab.root / "data" / "feats.csv").read_bytes()
    assert feats == GTO_FILES["sub:feats"]["v1.0.0"]
    assert summary["pulled"][0].startswith("Pulled table v1.0.0 into data/table.csv"), summary
