"""The model registry as the catalog service uses it: MLflow, with the catalog's hub token
(a trusted service: MLflow's admin), every call short and never retried for minutes.

Model names are put into MLflow filter strings only through
:func:`~server_ext.registry_names.name_filter`, and
version numbers only after :func:`check_version`, so a name with a quote or a version of
twenty digits is a clean 4xx, not a broken listing or a 500 that the client retries.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from hub_ext.services.catalog.errors import CatalogError
from hub_ext.services.catalog.gates import Candidate
from hub_ext.services.catalog.openapi import signature_columns
from server_ext.registry_names import is_version

EDITORS = ("EDIT", "MANAGE")


def check_version(version: str) -> str:
    """A version number as MLflow stores it, or CatalogError 404 (never a huge int)."""
    text = str(version).strip()
    if not is_version(text):
        raise CatalogError(404, f"No model version {text[:40]!r}: versions are 1, 2, 3, …")
    return text


def _not_found(e: Exception) -> bool:
    return getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class MLflowRegistry:
    """The promotion flow's registry (see :class:`hub_ext.services.catalog.promotions.Registry`)."""

    def __init__(self, tracking_uri: str, token: str, timeout: float = 10.0) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self.token = token
        self.timeout = timeout

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def candidate(self, model: str, version: str) -> Candidate:
        from mlflow.exceptions import MlflowException
        from mlflow.models import get_model_info

        version = check_version(version)
        client = self.client()
        try:
            found = client.get_model_version(model, version)
        except MlflowException as e:
            if _not_found(e):
                raise CatalogError(404, f"No version {version} of model {model!r}") from None
            raise CatalogError(502, f"The model registry did not answer: {e.message}") from None
        try:
            signature = signature_columns(get_model_info(f"models:/{model}/{version}").signature)
        except Exception:  # no MLmodel (a version made by hand): no signature to compare
            signature = None
        metrics: dict[str, float] = {}
        if found.run_id:
            try:
                metrics = dict(client.get_run(found.run_id).data.metrics)
            except MlflowException:
                metrics = {}
        return Candidate(str(found.version), signature, metrics, dict(found.tags or {}))

    def alias_version(self, model: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except MlflowException as e:
            if _not_found(e):
                return None
            raise CatalogError(502, f"The model registry did not answer: {e.message}") from None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client().set_registered_model_alias(model, alias, check_version(version))
        except MlflowException as e:
            raise CatalogError(502, f"The model registry refused the alias: {e.message}") from None

    def may_edit(self, user: str, model: str) -> bool:
        """Whether MLflow lets ``user`` edit ``model`` (its creator, their sharing groups,
        admins): MLflow's own answer, asked as the user."""
        request = urllib.request.Request(
            f"{self.tracking_uri}/api/3.0/mlflow/users/current/permissions",
            headers={"Authorization": f"Bearer {self.token}", "X-Dsplatform-User": user},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CatalogError(502, f"The model registry did not answer: {e}") from None
        if answer.get("is_admin"):
            return True
        return any(
            p.get("resource_type") == "registered_model"
            and p.get("resource_pattern") in (model, "*")
            and p.get("permission") in EDITORS
            for p in answer.get("permissions", [])
        )


def from_environment() -> MLflowRegistry:
    return MLflowRegistry(
        os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
    )
