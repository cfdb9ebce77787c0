"""What the JupyterLab sidebar needs of ``GET /dsdata/api/experiments`` beyond the runs: the
project's MLflow experiment and the MLflow UI to link to (a real jupyter-server via
pytest-jupyter and the session's ``mlflow server``).

The async tests are run by pytest-jupyter's own hook on its event loop (not marked for
pytest-asyncio, which runs in strict mode and so leaves them alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server_ext.experiments import ExperimentService

from .mlflow_server import MLflowServer, mlflow_server_fixture  # noqa: F401
from .registries import dvc_site_cache_fixture, registry_fixture  # noqa: F401
from .rest import API

# a sandbox's environment for the server, as the REST tests of experiments set it up
from .test_exp_kernel_rest import jp_server_config  # noqa: F401

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.mark.parametrize(
    ("tracking_uri", "expected"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://mlflow.example.org/", "https://mlflow.example.org"),
        ("http://hub:8000/services/mlflow/", "http://hub:8000/services/mlflow"),
        ("sqlite:///tmp/mlflow.db", None),
        ("file:///tmp/mlruns", None),
        ("databricks", None),
    ],
)
def test_ui_url_is_the_tracking_server_when_it_is_http(
    tmp_path: Path, tracking_uri: str, expected: str | None
) -> None:
    assert ExperimentService(root=tmp_path, tracking_uri=tracking_uri).ui_url == expected


@pytest.mark.parametrize("ui", ["/services/catalog/mlflow/", "/services/catalog/mlflow"])
def test_the_hubs_mlflow_route_wins_over_the_tracking_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ui: str
) -> None:
    monkeypatch.setenv("DSDATA_MLFLOW_UI_URL", ui)
    service = ExperimentService(root=tmp_path, tracking_uri="http://10.0.0.7:5000")
    assert service.ui_url == "/services/catalog/mlflow/"  # relative links need the slash
    assert service.run_url("r1", "3") == "/services/catalog/mlflow/#/experiments/3/runs/r1"
    # even where the sandbox talks to MLflow some other way
    assert ExperimentService(root=tmp_path, tracking_uri="file:///x").ui_url == service.ui_url


@pytest.fixture
def jp_root_dir(tmp_path: Path) -> Path:
    """The server's root: a project dir named after the test (it names the experiment)."""
    root = tmp_path / f"labapi-{tmp_path.name.replace('_', '-')}"
    root.mkdir()
    return root


async def test_experiments_name_the_experiment_and_the_mlflow_ui(
    jp_fetch: Any, jp_root_dir: Path, mlflow_server: MLflowServer
) -> None:
    listed = json.loads((await jp_fetch(*API, "experiments")).body)
    assert listed == {
        "runs": [],
        "experiment": f"dsdata/alice/{jp_root_dir.name}",
        "mlflow_url": mlflow_server.url,
    }

    (jp_root_dir / "train.py").write_text("x = 1\n")
    response = await jp_fetch(
        *API, "experiments", method="POST", body=json.dumps({"message": "for the sidebar"})
    )
    run_id = json.loads(response.body)["run_id"]
    listed = json.loads((await jp_fetch(*API, "experiments", params={"n": "3"})).body)
    [run] = listed["runs"]
    assert run["run_id"] == run_id and run["message"] == "for the sidebar"
    # the run's link is inside the UI the sidebar links to
    assert run["url"].startswith(f"{listed['mlflow_url']}/#/experiments/")
    assert run["url"].endswith(f"/runs/{run_id}")
