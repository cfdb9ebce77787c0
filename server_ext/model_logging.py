"""A model file of a project logged into an MLflow run, as the run's ``model``.

Both ``%dsdata commit --model PATH`` (into the commit's own run) and ``%dsdata publish
--path PATH`` (for a path no commit recorded) log models here: an MLflow model directory
as is, a pickled scikit-learn estimator through ``mlflow.sklearn`` (a signature when the
estimator knows its features). :func:`content_digest` names a model's content, so a publish
finds the commit that recorded it. MLflow's own console lines ("View run at
http://127.0.0.1:…", "Registered model … already exists") are kept off the notebook.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InvalidReference

PICKLES = (".pkl", ".pickle", ".joblib")
MODEL_PATH_TAG = "dsdata.model_path"
MODEL_DIGEST_TAG = "dsdata.model_digest"


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow prints raw tracking-server links and registry chatter to stdout/stderr; the
    magics print their own lines, with links through the hub."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def model_source(root: Path, path: str) -> Path:
    """The model file or directory ``path`` names inside the project ``root``, checked.

    Raises:
        InvalidReference: outside the project, missing, or neither an MLflow model
            directory nor one pickled model.
    """
    from .refs import inside_project

    source = inside_project(root, path, "model")
    if not source.exists():
        raise InvalidReference(f"Model path {path!r} does not exist")
    check_model(source)
    return source


def is_mlflow_model(source: Path) -> bool:
    return source.is_dir() and (source / "MLmodel").is_file()


def check_model(source: Path) -> None:
    """An MLflow model directory or one pickled model, else InvalidReference (nothing read)."""
    if is_mlflow_model(source):
        return
    pickle_file(source)


def pickle_file(source: Path) -> Path:
    candidates = (
        [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in PICKLES)
    )
    if len(candidates) != 1 or candidates[0].suffix not in PICKLES:
        raise InvalidReference(
            f"{source} is neither an MLflow model directory (with MLmodel) nor one pickled "
            "model (.pkl/.joblib); save it with mlflow.<flavor>.save_model or pickle it"
        )
    return candidates[0]


def content_digest(source: Path) -> str:
    """md5 of a file, or of a directory's sorted (relative path, md5) pairs."""
    if source.is_file():
        return _md5(source)
    digest = hashlib.md5()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source).as_posix()}\0{_md5(path)}\n".encode())
    return digest.hexdigest()


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def log_model(tracking_uri: str, run_id: str, source: Path) -> str:
    """Log ``source`` into run ``run_id`` as its ``model``; the URI to register."""
    import mlflow

    with quiet_mlflow():
        if is_mlflow_model(source):
            mlflow.MlflowClient(tracking_uri).log_artifacts(run_id, os.fspath(source), "model")
            return f"runs:/{run_id}/model"
        estimator = load_pickle(source)
        mlflow.set_tracking_uri(tracking_uri)
        # the fluent API refuses a run outside its active experiment: the run's own
        experiment_id = mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_run(run_id=run_id, log_system_metrics=False):
            log_sklearn(estimator)
        return f"runs:/{run_id}/model"


def load_pickle(source: Path) -> Any:
    """A pickled estimator: the file, or the single pickle inside a directory."""
    file = pickle_file(source)
    if file.suffix == ".joblib":
        import joblib

        return joblib.load(file)
    with open(file, "rb") as f:
        return pickle.load(f)


def log_sklearn(estimator: Any) -> str:
    """Log a scikit-learn estimator as ``model`` (signature from its features); its URI."""
    import mlflow.sklearn

    if not hasattr(estimator, "predict"):
        raise InvalidReference(
            f"{type(estimator).__name__} is not a scikit-learn estimator (no predict); "
            "log it with the MLflow flavor of its library"
        )
    signature = None
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        import pandas as pd
        from mlflow.models import infer_signature

        example = pd.DataFrame([[0.0] * len(names)], columns=list(names))
        signature = infer_signature(example, estimator.predict(example))
    # cloudpickle, as the estimator came: MLflow's default (skops) refuses common estimators
    # (trees, forests, boosting) and custom classes unless their types are listed as trusted
    # explicit requirements: MLflow's inference would reload the model in a subprocess (~2 s)
    import cloudpickle
    import sklearn

    requirements = [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
    ]
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=signature,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        pip_requirements=requirements,
    )
    return str(info.model_uri)
