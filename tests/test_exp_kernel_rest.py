"""Experiments and models through the fronts users touch: ``%dsdata`` in a real kernel of
this environment (loaded by its kernel config, no ``%load_ext``) and ``/dsdata/api/`` in a
real jupyter-server (pytest-jupyter), both against the session's ``mlflow server``.

The async tests are run by pytest-jupyter's own hook on its event loop (not marked for
pytest-asyncio, which runs in strict mode and so leaves them alone).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jupyter_server.utils import url_path_join

from server_ext.notebook import SAVE_MIME

from .kernels import Kernel, running_kernel
from .mlflow_server import (  # noqa: F401  (fixtures)
    RESOURCES,
    MLflowServer,
    Project,
    mlflow_server_fixture,
    project_fixture,
)
from .registries import Registry, dvc_site_cache_fixture, registry_fixture  # noqa: F401
from .rest import API, body, error_of

pytest_plugins = ["pytest_jupyter.jupyter_server"]

# mlflow.pyfunc (imported by publish in the server) warns about its own type hints
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")


def pickled_model(path: Path, seed: int = 1) -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(30, 2)), columns=["x1", "x2"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(LinearRegression().fit(X, X["x1"] * 3 + 1), f)


# --- a real kernel -------------------------------------------------------------------------
@pytest.fixture
def kernel(project: Project, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel in the project, with the sandbox-like environment of the project fixture."""
    env = dict(os.environ)
    env["IPYTHONDIR"] = os.fspath(tmp_path / "ipython")  # no user profile gets in the way
    with running_kernel(env, project.root) as kernel:
        yield kernel


def test_experiment_magics_in_a_kernel(kernel: Kernel, project: Project) -> None:
    root = project.root
    assert kernel.run("%dsdata pull iris@v1 -q").stream().startswith("iris@v1.1.0 -> data/iris")
    pickled_model(root / "model" / "model.pkl")
    (root / "train.py").write_text("# fit a line\n")

    out = kernel.run(
        '%dsdata commit -m "first run" --param lr=0.1 --param note="two words" --metric auc=0.9 '
        "--outputs model"
    )
    assert out.reply["content"]["status"] == "ok"
    text = out.stream()
    match = re.search(
        rf"^committed ([0-9a-f]{{10}}) \(run ([0-9a-f]{{32}})\) in {re.escape(project.experiment)}$",
        text,
        re.M,
    )
    assert match, text
    sha10, run_id = match.groups()
    assert project.git("rev-parse", "HEAD").startswith(sha10)
    [link] = [d for d in out.displays() if "<a href" in d.get("text/html", "")]  # clickable
    assert link["text/html"].startswith(f"<a href='{project.tracking_uri}/#/experiments/")
    assert run_id in link["text/html"] and "target='_blank'" in link["text/html"]
    assert link["text/plain"].startswith(f"{project.tracking_uri}/#/experiments/")
    assert "View run" not in text and "View experiment" not in text  # MLflow's own lines
    run = project.client().get_run(run_id)
    assert run.data.params == {"lr": "0.1", "note": "two words"}  # quotes are shell quotes
    assert run.data.metrics == {"auc": 0.9}
    assert run.data.tags["mlflow.runName"] == "first run"
    assert project.git("log", "-1", "--format=%s") == "first run"
    assert run.data.tags["mlflow.user"] == "alice"
    assert run.data.tags["dsdata.dataset.iris"].startswith("v1.1.0@")
    assert "model.dvc" in project.git("ls-files")

    [table] = kernel.run("%dsdata log -n 5").displays()
    lines = table["text/plain"].splitlines()
    assert lines[0] == "Experiments"
    assert lines[1].split()[:3] == ["run", "status", "message"]
    row = lines[-1]
    assert row.startswith(f"{run_id[:12]}  finished  first run")
    assert "auc=0.9" in row and "iris@v1.1.0" in row and sha10 in row
    assert f"<td style='text-align:left'>{run_id[:12]}</td>" in table["text/html"]

    out = kernel.run("%dsdata publish kernel-line --path model/model.pkl --alias staging")
    assert "registered kernel-line version 1 -> models:/kernel-line@staging" in out.stream()
    assert "model/model.pkl was not recorded by a commit" in out.stream()  # a run of its own
    assert "View run" not in out.stream() and "already exists" not in out.stream()
    [table] = kernel.run("%dsdata models").displays()
    assert "Registered models" in table["text/plain"]
    assert re.search(r"kernel-line\s+1\s+staging->v1\s+1\s+alice", table["text/plain"])
    out = kernel.run(f"%dsdata publish kernel-line --run {run_id}")
    assert out.stream() == (
        f"dsdata publish: Run {run_id} has no MLflow model: log one with %dsdata commit -m MSG "
        "--model PATH, or publish a file with --path PATH\n"
    )
    assert kernel.run("%dsdata sync").stream() == "sent 0 queued run(s); 0 still queued\n"

    out = kernel.run(f"%dsdata reproduce {run_id} -o again")
    assert re.search(
        rf"run {run_id} reproduced in {re.escape(str(root / 'again'))} at {sha10}: "
        r"1 dataset\(s\), 1 output\(s\), content hashes identical",
        out.stream(),
    ), out.stream()

    # the Python API answers the same in the kernel
    out = kernel.run(
        "import json\nfrom server_ext import dsdata\n"
        "print(json.dumps([[r['run_id'], r['message']] for r in dsdata.log(5)]))"
    )
    # newest first: the run that publish made (same experiment), then the commit's run
    rows = json.loads(out.stream().splitlines()[-1])
    assert [r[1] for r in rows][1:] == ["first run"] and rows[1][0] == run_id
    assert rows[0][1] == "publish model/model.pkl (not committed: this run holds only the model)"


def test_models_come_from_the_run_that_trained_them(kernel: Kernel, project: Project) -> None:
    """commit --model logs the model in the commit's own run; publish --run and publish
    --path of that path register it against that run; a changed path gets a run of its own."""
    root = project.root
    pickled_model(root / "out" / "model.pkl")
    (root / "train.py").write_text("# train\n")
    out = kernel.run('%dsdata commit -m "trained" --metric r2=0.99 --model out/model.pkl')
    text = out.stream()
    match = re.search(r"\(run ([0-9a-f]{32})\)", text)
    assert match, (text, out.reply["content"])
    run_id = match.group(1)
    assert "View run" not in text and "127.0.0.1" not in text.replace(project.tracking_uri, "")
    run = project.client().get_run(run_id)
    assert run.data.tags["dsdata.model_path"] == "out/model.pkl"
    assert "out/model.pkl.dvc" in project.git("ls-files")  # the model is versioned with DVC

    client = project.client()
    out = kernel.run(f"%dsdata publish from-run --run {run_id}")
    assert out.stream() == "registered from-run version 1 -> models:/from-run/1\n", out.stream()
    assert client.get_model_version("from-run", "1").run_id == run_id
    out = kernel.run("%dsdata publish from-path --path out/model.pkl")
    assert out.stream() == "registered from-path version 1 -> models:/from-path/1\n", out.stream()
    version = client.get_model_version("from-path", "1")
    assert version.run_id == run_id and version.tags["dsdata.run_id"] == run_id
    assert client.get_run(run_id).data.metrics == {"r2": 0.99}  # the run that trained it

    # the file changed since: not the committed model, so a run of its own that says so
    pickled_model(root / "out" / "model.pkl", seed=2)
    out = kernel.run("%dsdata publish from-path --path out/model.pkl")
    assert "registered from-path version 2" in out.stream()
    assert "out/model.pkl was not recorded by a commit" in out.stream()
    other = client.get_model_version("from-path", "2").run_id
    assert other != run_id
    assert client.get_run(other).data.tags["dsdata.uncommitted_model"] == "out/model.pkl"

    out = kernel.run("%dsdata commit -m x --model nowhere.pkl")
    assert out.stream() == "dsdata commit: Model path 'nowhere.pkl' does not exist\n"
    out = kernel.run("%dsdata commit -m x --model train.py")
    assert "is neither an MLflow model directory" in out.stream()
    out = kernel.run("%dsdata commit -m x --model ../outside.pkl")
    assert "outside the project" in out.stream()


def test_a_notebook_with_unsaved_cells_is_not_committed(project: Project, tmp_path: Path) -> None:
    """The kernel of a notebook whose cells ran after its last save, with no frontend to
    save it: the commit is refused with what to save; once saved, it goes through."""
    env = dict(os.environ)
    env["IPYTHONDIR"] = os.fspath(tmp_path / "ipython")
    env["JPY_SESSION_NAME"] = "analysis.ipynb"  # what jupyter-server sets for a notebook
    env["DSDATA_SAVE_TIMEOUT"] = "1"
    notebook = project.root / "analysis.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    with running_kernel(env, project.root) as kernel:
        kernel.run("x = 41 + 1")  # ran in the browser, not saved
        out = kernel.run('%dsdata commit -m "stale"')
        assert out.stream().startswith(
            "dsdata commit: analysis.ipynb has changes that are not saved (cells ran after "
            "it was last saved at "
        ), out.stream()
        assert "Ctrl+S" in out.stream() and "Nothing was committed." in out.stream()
        [request] = [d for d in out.displays() if SAVE_MIME in d]  # the frontend was asked
        assert request[SAVE_MIME]["notebook"] == "analysis.ipynb"
        assert project.head() is None
        notebook.write_text(notebook.read_text())  # saved
        out = kernel.run('%dsdata commit -m "saved"')
        assert out.stream().startswith("committed "), out.stream()
        assert "analysis.ipynb" in project.git("ls-files")


def test_another_notebook_with_unsaved_cells_is_not_committed(
    project: Project, tmp_path: Path
) -> None:
    """Two notebooks' kernels of one user: cells ran in ``notes/analysis.ipynb`` after its
    last save; a commit from ``report.ipynb`` (no frontend) is refused naming it, goes
    through once it is saved, and once its kernel is shut down its changes no longer
    block."""
    empty = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
    (project.root / "notes").mkdir()
    analysis = project.root / "notes" / "analysis.ipynb"
    analysis.write_text(empty)
    (project.root / "report.ipynb").write_text(empty)
    env = dict(os.environ)
    env["IPYTHONDIR"] = os.fspath(tmp_path / "ipython")
    env["JUPYTER_RUNTIME_DIR"] = os.fspath(tmp_path / "runtime")
    env["DSDATA_SAVE_TIMEOUT"] = "1"
    records = tmp_path / "runtime" / "dsplatform-kernels"
    with (
        running_kernel({**env, "JPY_SESSION_NAME": "notes/analysis.ipynb"},
                       analysis.parent) as other,
        running_kernel({**env, "JPY_SESSION_NAME": "report.ipynb"}, project.root) as kernel,
    ):  # fmt: skip
        other.run("y = 6 * 7")  # ran in another tab, not saved
        out = kernel.run('%dsdata commit -m "stale"')
        assert out.stream().startswith(
            "dsdata commit: notes/analysis.ipynb has changes that are not saved (cells ran "
            "after it was last saved at "
        ), out.stream()
        assert "shut down its kernel" in out.stream()
        [request] = [d for d in out.displays() if SAVE_MIME in d]
        assert request[SAVE_MIME]["notebooks"] == ["notes/analysis.ipynb"]
        assert project.head() is None
        for notebook in (analysis, project.root / "report.ipynb"):  # saved (by the user)
            notebook.write_text(notebook.read_text())
        out = kernel.run('%dsdata commit -m "saved"')
        assert out.stream().startswith("committed "), out.stream()
        assert "notes/analysis.ipynb" in project.git("ls-files")

        other.run("y = 0")  # unsaved again, then the user shuts that kernel down
        assert len(list(records.glob("*.json"))) == 2  # one record per live kernel
        other.shutdown()
        (project.root / "a.py").write_text("x = 1\n")
        (project.root / "report.ipynb").write_text(empty)
        out = kernel.run('%dsdata commit -m "after the other kernel stopped"')
        assert out.stream().startswith("committed "), out.stream()
        assert len(list(records.glob("*.json"))) == 1  # the stopped kernel's is gone


def test_bad_experiment_input_in_a_kernel_is_a_message(kernel: Kernel, project: Project) -> None:
    (project.root / "a.py").write_text("x = 1\n")
    cases = [
        ('%dsdata commit -m "x" --param lr', "dsdata commit: Invalid param 'lr': use key=value\n"),
        ('%dsdata commit -m "x" --param api_key=1', "dsdata commit: Refusing param 'api_key'"),
        (
            '%dsdata commit -m "x" --metric auc=high',
            "dsdata commit: Metric auc='high' is not a number",
        ),
        ('%dsdata commit -m "x" --outputs nope', "dsdata commit: Output 'nope' does not exist"),
        ("%dsdata log -n 0", "dsdata log: -n must be at least 1"),
        ("%dsdata reproduce nothex", "dsdata reproduce: Invalid run id 'nothex'"),
        (f"%dsdata reproduce {'0' * 32}", f"dsdata reproduce: No MLflow run {'0' * 32}"),
        ("%dsdata publish 'bad name' --path a.py", "dsdata publish: Invalid model name 'bad name'"),
        ("%dsdata publish m --path a.py --alias latest", "dsdata publish: Invalid alias 'latest'"),
        ("%dsdata publish m", "dsdata publish: Give exactly one of --path PATH or --run RUN_ID"),
    ]
    for line, expected in cases:
        out = kernel.run(line)
        assert out.reply["content"]["status"] == "ok", line
        assert out.stream().startswith(expected), (line, out.stream())
    out = kernel.run("%dsdata commit --param lr=1")  # -m is required: a message, and the help
    assert out.reply["content"]["status"] == "ok"
    assert "the following arguments are required: -m/--message" in out.stream()
    assert "%dsdata commit --help" in out.stream()
    assert project.head() is None and project.runs() == []

    page = kernel.run("%dsdata?").page
    for usage in ("%dsdata commit -m MESSAGE", "%dsdata log [-n N]", "%dsdata reproduce",
                  "%dsdata publish", "%dsdata models", "%dsdata sync"):  # fmt: skip
        assert usage in page, usage


# --- REST through a real jupyter-server ----------------------------------------------------
@pytest.fixture
def jp_root_dir(tmp_path: Path) -> Path:
    """The server's root: a project dir named after the test (it names the experiment)."""
    root = tmp_path / f"rest-{tmp_path.name.replace('_', '-')}"
    root.mkdir()
    return root


@pytest.fixture
def jp_server_config(
    mlflow_server: MLflowServer,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The extension on, with a sandbox's environment; set before the server starts."""
    for name in ("DSDATA_CATALOG_URL", "DSPLATFORM_WORKSPACE", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("DSDATA_DVC_REMOTE", os.fspath(tmp_path / "dvc-remote"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("DSPLATFORM_PROFILE", "cpu-small")
    monkeypatch.setenv("DSPLATFORM_RESOURCES", json.dumps(RESOURCES))
    monkeypatch.setenv("DSDATA_REGISTRIES", registry.url)
    monkeypatch.setenv("DSDATA_CACHE_DIR", os.fspath(tmp_path / "cache"))
    return {"ServerApp": {"jpserver_extensions": {"server_ext": True}}}


def post(data: Any) -> dict[str, Any]:
    return {"method": "POST", "body": data if isinstance(data, str) else json.dumps(data)}


async def test_commit_log_publish_and_models_over_rest(
    jp_fetch: Any, jp_root_dir: Path, mlflow_server: MLflowServer
) -> None:
    root = jp_root_dir
    (root / "train.py").write_text("print('rest')\n")
    pickled_model(root / "model" / "model.pkl")
    response = await jp_fetch(
        *API, "experiments",
        **post({"message": "over rest", "params": {"lr": 0.1, "depth": 3},
                "metrics": {"auc": 0.875}, "outputs": ["model"]}),
    )  # fmt: skip
    assert response.code == 201
    result = body(response)
    assert re.fullmatch(r"[0-9a-f]{32}", result["run_id"]) and result["queued"] is False
    assert re.fullmatch(r"[0-9a-f]{40}", result["git_sha"])
    assert result["outputs"]["model"].endswith(".dir")
    assert result["experiment"] == f"dsdata/alice/{root.name}"

    from mlflow import MlflowClient

    run = MlflowClient(mlflow_server.url).get_run(result["run_id"])
    assert run.data.params == {"lr": "0.1", "depth": "3"} and run.data.metrics == {"auc": 0.875}
    assert run.data.tags["dsdata.git_sha"] == result["git_sha"]

    runs = body(await jp_fetch(*API, "experiments", params={"n": "5"}))["runs"]
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    assert runs[0]["message"] == "over rest" and runs[0]["status"] == "finished"

    code, error = await error_of(jp_fetch, "experiments", **post({"message": "same again"}))
    assert code == 409 and error["message"].startswith("Nothing changed since the last commit")

    response = await jp_fetch(
        *API,
        "models",
        **post({"model": "rest-line", "path": "model/model.pkl", "alias": "staging"}),
    )
    assert response.code == 201
    published = body(response)
    assert (published["name"], published["version"]) == ("rest-line", 1)
    assert published["uri"] == "models:/rest-line@staging"
    assert published["tags"]["dsdata.git_sha"] == result["git_sha"]
    models = {m["name"]: m for m in body(await jp_fetch(*API, "models"))["models"]}
    assert models["rest-line"]["aliases"] == {"staging": 1}
    assert models["rest-line"]["versions"] == [1]


@pytest.mark.parametrize(
    ("route", "payload", "status", "fragment"),
    [
        ("experiments", "not json", 400, "must be JSON"),
        ("experiments", ["x"], 400, "must be a JSON object"),
        ("experiments", {"message": "m", "bogus": 1}, 400, "Unknown field 'bogus'"),
        ("experiments", {}, 400, "A commit message is required"),
        ("experiments", {"message": 3}, 400, "Field 'message' has the wrong type"),
        ("experiments", {"message": "m", "params": ["a"]}, 400, "Field 'params' has the wrong type"),
        ("experiments", {"message": "m", "outputs": "model"}, 400, "Field 'outputs' has the wrong type"),
        ("experiments", {"message": "m", "outputs": [1]}, 400, "'outputs' must be a list of paths"),
        ("experiments", {"message": "m", "metrics": {"auc": "high"}}, 400, "is not a number"),
        ("experiments", {"message": "m", "params": {"password": "x"}}, 400, "looks like a secret"),
        ("experiments", {"message": "m", "outputs": ["../x"]}, 400, "outside the project"),
        ("models", {}, 400, "Invalid model name ''"),
        ("models", {"model": "m", "path": "a.py", "run_id": "0" * 32}, 400, "Give exactly one"),
        ("models", {"model": "m", "path": "a.py", "alias": "Bad"}, 400, "Invalid alias 'Bad'"),
        ("models", {"model": "m", "path": "a.py", "version": 2}, 400, "Unknown field 'version'"),
        ("models", {"model": "m", "run_id": "0" * 32}, 404, "No MLflow run"),
        ("models", {"model": "m", "path": "missing.pkl"}, 400, "does not exist"),
    ],
)  # fmt: skip
async def test_bad_requests_are_json_errors(
    jp_fetch: Any, jp_root_dir: Path, route: str, payload: Any, status: int, fragment: str
) -> None:
    (jp_root_dir / "a.py").write_text("x = 1\n")
    code, error = await error_of(jp_fetch, route, **post(payload))
    assert code == status, error
    assert fragment in error["message"], error
    assert not (jp_root_dir / ".git").exists() or route == "experiments"
    for n in ("lots", "99999999999999999999", "0", "-1", "²", "1001"):
        code, error = await error_of(jp_fetch, "experiments", params={"n": n})
        assert code == 400 and error["message"].startswith("n must be a number from 1 to 1000")


async def test_hostile_bodies_and_paths_are_4xx(
    jp_fetch: Any, jp_root_dir: Path, tmp_path: Path
) -> None:
    """Deep JSON, huge names, paths out of the project: a clean 4xx and nothing done."""
    deep = "[" * 100_000 + "]" * 100_000
    for route in ("pulls", "experiments", "models"):
        code, error = await error_of(jp_fetch, route, **post(deep))
        assert code == 400 and "nested too deeply" in error["message"], (route, error)
    code, error = await error_of(jp_fetch, "pulls", **post({"dataset": "X!" * 10_000_000}))
    assert code == 413 and len(error["message"]) < 200, error["message"][:300]
    code, error = await error_of(jp_fetch, "pulls", **post({"dataset": "X!" * 100_000}))
    assert code == 400 and len(error["message"]) < 300 and "200000 chars" in error["message"]
    # paths a request names stay inside the workspace
    other = tmp_path / "other"
    other.mkdir()
    pickled_model(other / "model.pkl")
    (jp_root_dir / "link.pkl").symlink_to(other / "model.pkl")
    rel = os.path.relpath(other / "model.pkl", jp_root_dir)
    for path in (rel, os.fspath(other / "model.pkl"), "link.pkl"):
        code, error = await error_of(jp_fetch, "models", **post({"model": "m", "path": path}))
        assert code == 400 and "outside the project" in error["message"], (path, error)
    (jp_root_dir / "train.py").write_text("print(1)\n")
    for field in ("params_file", "metrics_file"):
        for path in ("/etc/passwd", "../../../../etc/hostname"):
            payload = {"message": "m", field: path}
            code, error = await error_of(jp_fetch, "experiments", **post(payload))
            assert code == 400 and "outside the project" in error["message"], (path, error)
            assert "root:" not in error["message"]
    assert not (jp_root_dir / ".git").exists()


@pytest.mark.parametrize(("route", "method"), [(r, m) for r in ("experiments", "models") for m in ("GET", "POST")])  # fmt: skip
async def test_unauthenticated_requests_are_refused(
    http_server_client: Any, jp_base_url: str, jp_root_dir: Path, route: str, method: str
) -> None:
    (jp_root_dir / "a.py").write_text("x = 1\n")
    kwargs: dict[str, Any] = {"method": method, "raise_error": False, "follow_redirects": False}
    if method == "POST":
        kwargs["body"] = json.dumps({"message": "sneaky", "model": "m", "path": "a.py"})
    response = await http_server_client.fetch(url_path_join(jp_base_url, *API, route), **kwargs)
    if response.code == 302:
        assert "/login" in response.headers["Location"]
    else:
        assert response.code == 403
    assert not (jp_root_dir / ".git").exists()
