"""``publish``: MLflow Model Registry versions with lineage tags and aliases, from a pickled
estimator, an MLflow model directory, or a run's ``model``; loaded back with pyfunc."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from server_ext import dsdata
from server_ext.errors import InvalidReference
from server_ext.experiments import UnknownRun
from server_ext.models import ModelService

from .mlflow_server import Project, mlflow_server_fixture, project_fixture  # noqa: F401
from .registries import Registry, dvc_site_cache_fixture, registry_fixture  # noqa: F401

# mlflow.pyfunc warns about its own type hints when first imported
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")


def train(root: Path) -> tuple[Any, pd.DataFrame]:
    """A tiny classifier on the pulled iris CSV (a DataFrame: the model knows its features)."""
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.read_csv(root / "data" / "iris" / "iris.csv")
    features = frame.drop(columns=["species"])
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, frame["species"])
    return model, features


def test_publish_a_pickled_model_with_lineage_and_aliases(
    project: Project, registry: Registry
) -> None:
    import mlflow.pyfunc

    root = project.root
    dsdata.pull("iris@v1")
    model, features = train(root)
    (root / "model").mkdir()
    with open(root / "model" / "model.pkl", "wb") as f:
        pickle.dump(model, f)
    (root / "train.py").write_text("# trains the tree\n")
    committed = dsdata.commit("tree", outputs=["model"])

    published = dsdata.publish("iris-tree", path="model/model.pkl", alias="staging")
    assert published["name"] == "iris-tree" and published["version"] == 1
    assert published["uri"] == "models:/iris-tree@staging" and published["alias"] == "staging"
    run_id = published["run_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", run_id)
    client = project.client()
    version = client.get_model_version("iris-tree", "1")
    assert version.tags["dsdata.run_id"] == run_id
    assert version.tags["dsdata.git_sha"] == committed.git_sha
    assert version.tags["dsdata.dataset.iris"] == f"v1.1.0@{registry.rev('iris@v1.1.0')}"
    assert version.tags["dsdata.project"] == str(root)
    assert client.get_model_version_by_alias("iris-tree", "staging").version == "1"
    run = client.get_run(run_id)  # the publishing run carries the lineage too
    assert run.data.tags["dsdata.git_sha"] == committed.git_sha
    assert run.data.tags["mlflow.user"] == "alice"
    assert client.get_registered_model("iris-tree").tags["dsdata.owner"] == "alice"

    loaded = mlflow.pyfunc.load_model("models:/iris-tree@staging")
    assert list(loaded.predict(features)) == list(model.predict(features))
    signature = loaded.metadata.signature
    assert signature is not None
    assert signature.inputs.input_names() == list(features.columns)

    # publish again (a retrained model): version 2, the alias moves to it
    retrained = type(model)(max_depth=1, random_state=0).fit(features, model.predict(features))
    with open(root / "model" / "model.pkl", "wb") as f:
        pickle.dump(retrained, f)
    second = dsdata.publish("iris-tree", path="model", alias="staging")  # the one pickle inside
    assert second["version"] == 2 and second["run_id"] != run_id
    assert client.get_model_version_by_alias("iris-tree", "staging").version == "2"
    again = mlflow.pyfunc.load_model("models:/iris-tree@staging")
    assert list(again.predict(features)) == list(retrained.predict(features))
    assert list(mlflow.pyfunc.load_model("models:/iris-tree/1").predict(features)) == list(
        model.predict(features)
    )
    third = dsdata.publish("iris-tree", path="model/model.pkl")  # no alias: it stays put
    assert third["version"] == 3 and third["uri"] == "models:/iris-tree/3"
    assert client.get_model_version_by_alias("iris-tree", "staging").version == "2"

    [row] = [m for m in dsdata.models() if m["name"] == "iris-tree"]
    assert row["versions"] == [1, 2, 3] and row["latest_version"] == 3
    assert row["aliases"] == {"staging": 2}
    assert row["owner"] == "alice"


def test_publish_from_a_run_and_from_an_mlflow_model_directory(project: Project) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = X["a"] * 2 - X["c"] + 0.5
    model = LinearRegression().fit(X, y)

    # a run that logged an MLflow model named 'model' (MLflow 3: name=)
    mlflow.set_tracking_uri(project.tracking_uri)
    mlflow.set_experiment(f"training-{project.root.name}")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(2))
    from_run = dsdata.publish("linear", run_id=run.info.run_id, alias="candidate")
    assert from_run["version"] == 1 and from_run["run_id"] == run.info.run_id
    assert from_run["source"] == f"runs:/{run.info.run_id}/model"
    loaded = mlflow.pyfunc.load_model("models:/linear@candidate")
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))
    version = project.client().get_model_version("linear", "1")
    assert version.tags["dsdata.run_id"] == run.info.run_id

    # an MLflow model directory (mlflow.sklearn.save_model) by path
    mlflow.sklearn.save_model(model, project.root / "exported")
    from_dir = dsdata.publish("linear", path="exported", alias="production")
    assert from_dir["version"] == 2
    loaded = mlflow.pyfunc.load_model("models:/linear@production")
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))
    aliases = {m["name"]: m["aliases"] for m in dsdata.models()}
    assert aliases["linear"] == {"candidate": 1, "production": 2}


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"name": "bad name"}, InvalidReference, "Invalid model name 'bad name'"),
        ({"name": "-dash"}, InvalidReference, "Invalid model name"),
        ({"name": "a/b"}, InvalidReference, "Invalid model name"),
        ({"name": "x" * 101}, InvalidReference, "Invalid model name"),
        ({"name": ""}, InvalidReference, "Invalid model name"),
        ({"alias": "latest"}, InvalidReference, "'latest' and 'v<number>' are reserved"),
        ({"alias": "v1"}, InvalidReference, "Invalid alias 'v1'"),
        ({"alias": "V2"}, InvalidReference, "Invalid alias 'V2'"),
        ({"alias": "Bad"}, InvalidReference, "Invalid alias 'Bad'"),
        ({"alias": "1st"}, InvalidReference, "Invalid alias '1st'"),
        ({"alias": ""}, InvalidReference, "Invalid alias ''"),
        ({"path": None}, InvalidReference, "Give exactly one of --path PATH or --run RUN_ID"),
        ({"run_id": "0" * 32}, InvalidReference, "Give exactly one of --path PATH or --run"),
        ({"path": None, "run_id": "xyz"}, InvalidReference, "Invalid run id 'xyz'"),
        ({"path": None, "run_id": "0" * 32}, UnknownRun, "No MLflow run 0000"),
        ({"path": "nope.pkl"}, InvalidReference, "Model path 'nope.pkl' does not exist"),
        ({"path": "notes.txt"}, InvalidReference, "is neither an MLflow model directory"),
        ({"path": "empty"}, InvalidReference, "is neither an MLflow model directory"),
        ({"path": "two"}, InvalidReference, "is neither an MLflow model directory"),
        ({"path": "notmodel.pkl"}, InvalidReference, "dict is not a scikit-learn estimator"),
    ],
)
def test_bad_publish_requests(
    project: Project, kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    root = project.root
    (root / "notes.txt").write_text("not a model\n")
    (root / "empty").mkdir()
    (root / "two").mkdir()
    for name in ("a.pkl", "b.pkl"):
        with open(root / "two" / name, "wb") as f:
            pickle.dump({"w": 1}, f)
    with open(root / "notmodel.pkl", "wb") as f:
        pickle.dump({"w": 1}, f)
    request: dict[str, Any] = {"name": "good-model", "path": "notes.txt", **kwargs}
    with pytest.raises(error, match=re.escape(fragment)):
        ModelService().publish(
            request["name"], path=request["path"], run_id=request.get("run_id"),
            alias=request.get("alias"),
        )  # fmt: skip
    names = [m["name"] for m in dsdata.models()]
    assert "good-model" not in names


def test_publish_from_a_run_without_a_model(project: Project) -> None:
    (project.root / "a.py").write_text("x = 1\n")
    run_id = dsdata.commit("no model here").run_id
    assert run_id
    with pytest.raises(
        InvalidReference, match=f"Run {run_id} has no MLflow model: log one with %dsdata commit"
    ):
        dsdata.publish("nothing-here", run_id=run_id)
    assert "nothing-here" not in [m["name"] for m in dsdata.models()]  # no empty model left
