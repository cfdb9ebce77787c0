"""Publishing models to the MLflow Model Registry, with their lineage.

``publish(name, run_id=…)`` registers the run's ``model`` artifact; ``publish(name,
path=…)`` logs the path first (an MLflow model directory as is; a pickled scikit-learn
estimator through ``mlflow.sklearn`` with a signature when the estimator knows its
features) in a new run tagged with the project's lineage. An alias points at the version.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import catalog_client
from .errors import DsdataError, InvalidReference
from .experiments import ExperimentService, TrackingUnavailable, UnknownRun
from .lineage import Lineage
from .refs import inside_project
from .registry_names import ModelNameError, name_filter

MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
PICKLES = (".pkl", ".pickle", ".joblib")


def check_model_name(name: str) -> None:
    if not isinstance(name, str) or not MODEL_RE.match(name):
        raise InvalidReference(
            f"Invalid model name {name!r}: letters, digits, '_', '.', '-' (at most 100)"
        )


def check_alias(alias: str) -> None:
    if not ALIAS_RE.match(alias) or alias == "latest" or re.fullmatch(r"v\d+", alias):
        raise InvalidReference(
            f"Invalid alias {alias!r}: lowercase letters, digits, '_' and '-', starting with a "
            "letter; 'latest' and 'v<number>' are reserved by MLflow"
        )


class ModelService:
    """Models of the platform's MLflow registry, published from this project."""

    def __init__(self, experiments: ExperimentService | None = None) -> None:
        self.experiments = experiments or ExperimentService()

    def publish(
        self,
        name: str,
        *,
        path: str | None = None,
        run_id: str | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """Register a model version (from ``path`` or ``run_id``) and set ``alias``."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        if (path is None) == (run_id is None):
            raise InvalidReference("Give exactly one of --path PATH or --run RUN_ID")
        client = self.experiments.client()
        if run_id is not None:
            if not re.fullmatch(r"[0-9a-f]{32}", run_id):
                raise InvalidReference(f"Invalid run id {run_id!r}: expected 32 hex characters")
            source_run = self._run(client, run_id)
            tags = {k: v for k, v in source_run.data.tags.items() if k.startswith("dsdata.")}
            model_uri = f"runs:/{run_id}/model"
        else:
            assert path is not None
            run_id, model_uri, tags = self._log_path(path)
        tags["dsdata.run_id"] = run_id
        import mlflow

        mlflow.set_tracking_uri(self.experiments.tracking_uri)
        created = False
        try:
            try:
                client.get_registered_model(name)
            except Exception:
                client.create_registered_model(name, tags={"dsdata.owner": self.experiments.user})
                created = True
            version = mlflow.register_model(model_uri, name, tags=tags)
            note = ""
            if alias:
                note = self._set_alias(client, name, alias, str(version.version))
                if note:
                    alias = None
        except DsdataError:
            raise
        except Exception as e:
            if created:  # leave no empty registered model behind
                with contextlib.suppress(Exception):
                    client.delete_registered_model(name)
            # MLflow 3 says "Unable to find a logged_model with artifact_path model under run"
            if any(s in str(e) for s in ("RESOURCE_DOES_NOT_EXIST", "No ", "Unable to find")):
                raise InvalidReference(
                    f"Run {run_id} has no MLflow model named 'model': {e}"
                ) from None
            raise TrackingUnavailable(f"The model registry refused {name!r}: {e}") from None
        return {
            "name": name,
            "version": int(version.version),
            "alias": alias,
            "run_id": run_id,
            "source": model_uri,
            "uri": f"models:/{name}@{alias}" if alias else f"models:/{name}/{version.version}",
            "tags": tags,
            "note": note,
        }

    @staticmethod
    def _set_alias(client: Any, name: str, alias: str, version: str) -> str:
        """Point ``alias`` at ``version``; for a protected alias, why not and what to do."""
        from mlflow.exceptions import MlflowException

        try:
            client.set_registered_model_alias(name, alias, version)
        except MlflowException as e:
            if e.error_code != "PERMISSION_DENIED":
                raise
            return (
                f"Registered {name} version {version}, but {alias!r} is not set: {e.message}. "
                f"Request it with %dsdata promote {name} {version} --alias {alias}"
            )
        return ""

    # --- promotions (the catalog service's four-eyes flow) -------------------------------
    def promote(self, name: str, version: int | str, alias: str, note: str = "") -> dict[str, Any]:
        """Ask for ``version`` of ``name`` to become the protected ``alias``: a pending
        request an approver decides (``POST …/api/models/NAME/promotions``)."""
        check_model_name(name)
        check_alias(alias)
        body = {"version": str(version), "alias": alias, "note": note}
        result: dict[str, Any] = catalog_client.call(
            "POST", f"models/{quote(name)}/promotions", body
        )
        return result

    def history(self, name: str) -> dict[str, Any]:
        """Every promotion request, decision and rollback of ``name``."""
        check_model_name(name)
        result: dict[str, Any] = catalog_client.call("GET", f"models/{quote(name)}/history")
        return result

    def _run(self, client: Any, run_id: str) -> Any:
        try:
            return client.get_run(run_id)
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
                raise UnknownRun(f"No MLflow run {run_id}") from None
            raise TrackingUnavailable(f"Cannot read run {run_id}: {e}") from None

    def _log_path(self, path: str) -> tuple[str, str, dict[str, str]]:
        """Log ``path`` as a model in a new run with the project's lineage.

        Returns the run id, the model URI to register, and the lineage tags.
        """
        import mlflow

        root = self.experiments.root
        source = inside_project(root, path, "model")
        if not source.exists():
            raise InvalidReference(f"Model path {path!r} does not exist")
        tags = {
            "dsdata.project": str(root),
            "mlflow.user": self.experiments.user,
            "mlflow.runName": f"publish {source.name}",
        }
        head = self.experiments.project.head() if (root / ".git").exists() else None
        if head:
            tags["dsdata.git_sha"] = head
        for record in Lineage(root).current().values():
            tags[f"dsdata.dataset.{record['dataset']}"] = f"{record['version']}@{record['rev']}"
        mlflow.set_tracking_uri(self.experiments.tracking_uri)
        mlflow.set_experiment(self.experiments.experiment_name)
        with mlflow.start_run(tags=tags) as run:
            if source.is_dir() and (source / "MLmodel").exists():
                mlflow.log_artifacts(os.fspath(source), "model")
                model_uri = f"runs:/{run.info.run_id}/model"
            else:
                model_uri = log_sklearn(load_pickle(source))
        lineage = {k: v for k, v in tags.items() if k.startswith("dsdata.")}
        return run.info.run_id, model_uri, lineage

    def list_models(self) -> list[dict[str, Any]]:
        try:
            return self._list_models()
        except DsdataError:
            raise
        except Exception as e:  # MLflow, requests, a broken store: never a 500
            raise TrackingUnavailable(f"Cannot read the model registry: {str(e)[:300]}") from None

    def _list_models(self) -> list[dict[str, Any]]:
        client = self.experiments.client()
        models = client.search_registered_models()
        rows = []
        for model in models:
            try:
                versions = client.search_model_versions(name_filter(model.name))
            except ModelNameError:
                versions = []
            latest = max((int(v.version) for v in versions), default=None)
            rows.append(
                {
                    "name": model.name,
                    "latest_version": latest,
                    "aliases": {a: int(v) for a, v in (model.aliases or {}).items()},
                    "versions": sorted(int(v.version) for v in versions),
                    "owner": (model.tags or {}).get("dsdata.owner"),
                    "description": model.description or "",
                }
            )
        return sorted(rows, key=lambda r: r["name"])


def load_pickle(source: Path) -> Any:
    """A pickled estimator: the file, or the single pickle inside a directory."""
    candidates = (
        [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in PICKLES)
    )
    if len(candidates) != 1 or candidates[0].suffix not in PICKLES:
        raise InvalidReference(
            f"{source} is neither an MLflow model directory (with MLmodel) nor one pickled "
            "model (.pkl/.joblib); save it with mlflow.<flavor>.save_model or pickle it"
        )
    file = candidates[0]
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
