"""Publishing models to the MLflow Model Registry, with their lineage.

``publish(name, run_id=…)`` registers the run's ``model`` artifact; ``publish(name,
path=…)`` logs the path first (an MLflow model directory as is; a pickled scikit-learn
estimator through ``mlflow.sklearn`` with a signature when the estimator knows its
features) in a new run tagged with the project's lineage. An alias points at the version.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import catalog_client
from .errors import DsdataError, InvalidReference
from .experiments import ExperimentService, TrackingUnavailable, UnknownRun
from .lineage import Lineage
from .model_logging import (
    MODEL_DIGEST_TAG,
    MODEL_PATH_TAG,
    content_digest,
    log_model,
    model_source,
    quiet_mlflow,
)
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
        note = ""
        logged_here = False  # a run of its own, made now for an uncommitted path
        if path is not None:
            source = model_source(self.experiments.root, path)
            run_id = self._committed_run(client, source)  # the commit that recorded it
            if run_id is None:
                run_id, model_uri, tags = self._log_path(client, source)
                logged_here = True
                note = (
                    f"{path} was not recorded by a commit: run {run_id} holds only the model. "
                    f"Commit it with %dsdata commit -m MSG --model {path} to tie it to the "
                    "code, data and metrics that made it."
                )
        if not re.fullmatch(r"[0-9a-f]{32}", run_id or ""):
            raise InvalidReference(f"Invalid run id {run_id!r}: expected 32 hex characters")
        assert run_id is not None
        if not logged_here:
            source_run = self._run(client, run_id)
            if not self._has_model(client, source_run):
                raise InvalidReference(
                    f"Run {run_id} has no MLflow model: log one with %dsdata commit -m MSG "
                    "--model PATH, or publish a file with --path PATH"
                )
            tags = {k: v for k, v in source_run.data.tags.items() if k.startswith("dsdata.")}
            model_uri = f"runs:/{run_id}/model"
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
            with quiet_mlflow():
                version = mlflow.register_model(model_uri, name, tags=tags)
            if alias:
                refused = self._set_alias(client, name, alias, str(version.version))
                if refused:
                    alias, note = None, f"{note} {refused}".strip()
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

    def _committed_run(self, client: Any, source: Path) -> str | None:
        """The newest run of this project's commits that recorded ``source`` as its model,
        with the same content (``%dsdata commit --model``)."""
        root = self.experiments.root
        rel = source.relative_to(root.resolve()).as_posix()
        experiment = client.get_experiment_by_name(self.experiments.experiment_name)
        if experiment is None:
            return None
        found = client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.`{MODEL_PATH_TAG}` = '{rel}' and "
                f"tags.`{MODEL_DIGEST_TAG}` = '{content_digest(source)}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return str(found[0].info.run_id) if found else None

    @staticmethod
    def _has_model(client: Any, run: Any) -> bool:
        """Does ``run`` hold a ``model`` (artifacts, or an MLflow 3 logged model)?"""
        run_id = run.info.run_id
        if any(a.path == "model/MLmodel" for a in client.list_artifacts(run_id, "model")):
            return True
        logged = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        return any(m.name == "model" for m in logged)

    def _log_path(self, client: Any, source: Path) -> tuple[str, str, dict[str, str]]:
        """Log ``source`` (which no commit recorded) as the model of a run of its own, tagged
        with the project's lineage and saying so.

        Returns the run id, the model URI to register, and the lineage tags.
        """
        root = self.experiments.root
        rel = source.relative_to(root.resolve()).as_posix()
        tags = {
            "dsdata.project": str(root),
            "dsdata.uncommitted_model": rel,
            "mlflow.user": self.experiments.user,
            "mlflow.runName": f"publish {rel} (not committed)",
            "mlflow.note.content": f"publish {rel} (not committed: this run holds only the model)",
        }
        head = self.experiments.project.head() if (root / ".git").exists() else None
        if head:
            tags["dsdata.git_sha"] = head
        for record in Lineage(root).current().values():
            tags[f"dsdata.dataset.{record['dataset']}"] = f"{record['version']}@{record['rev']}"
        experiment_id = self.experiments._experiment_id(client, self.experiments.experiment_name)
        run = client.create_run(experiment_id, tags=tags, run_name=tags["mlflow.runName"])
        run_id = str(run.info.run_id)
        try:
            model_uri = log_model(self.experiments.tracking_uri, run_id, source)
        except BaseException:
            with quiet_mlflow():
                client.set_terminated(run_id, "FAILED")
            raise
        with quiet_mlflow():
            client.set_terminated(run_id)
        lineage = {k: v for k, v in tags.items() if k.startswith("dsdata.")}
        return run_id, model_uri, lineage

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
