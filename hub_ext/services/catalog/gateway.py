"""The prediction gateway: which version a request names, that version's files, and the
serving worker that answers it (:mod:`hub_ext.services.serving`). The catalog never loads a
model itself; it reads only MLflow's metadata (MLmodel) and downloads the files.

MLflow calls block: the catalog runs them in worker threads, each short (the client's
timeout, no retries); version numbers are checked before they reach MLflow and model names
enter filter strings only through :func:`~server_ext.registry_names.name_filter`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from hub_ext.services.catalog.errors import CatalogError
from hub_ext.services.catalog.model_registry import check_version
from hub_ext.services.catalog.openapi import signature_columns
from hub_ext.services.serving.files import ModelFiles, model_key
from hub_ext.services.serving.pool import Answer
from server_ext.registry_names import name_filter

ALIAS_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class Serving(Protocol):
    """Where the workers run: :class:`~hub_ext.services.serving.pool.WorkerPool` (here) or
    :class:`~hub_ext.services.serving.remote.RemoteServing` (the chart's Deployment)."""

    async def invoke(self, key: str, model_dir: Any, body: bytes, content_type: str) -> Answer: ...

    def status(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def registry_failure(e: Exception, name: str, ref: str) -> CatalogError:
    code = getattr(e, "error_code", "")
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
        return CatalogError(404, f"No model {name[:200]!r} with version or alias {ref[:40]!r}")
    return CatalogError(502, f"The model registry did not answer: {str(e)[:300]}")


class ModelGateway:
    """Registered models and their served versions; aliases re-resolved every few seconds."""

    def __init__(
        self, tracking_uri: str, serving: Serving, files: ModelFiles, alias_ttl: float = 2.0
    ) -> None:
        self.tracking_uri = tracking_uri
        self.serving = serving
        self.files = files
        self.alias_ttl = alias_ttl
        self._aliases: dict[tuple[str, str], tuple[float, str]] = {}
        self._info: dict[tuple[str, str], Any] = {}
        self._examples: dict[tuple[str, str], dict[str, list[Any]] | None] = {}

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def resolve(self, name: str, ref: str) -> str:
        """The version number a ``ref`` (a version or an alias) names now (CatalogError 404)."""
        from mlflow.exceptions import MlflowException

        if ref.isascii() and ref.isdigit():
            version = check_version(ref)
            try:
                self.client().get_model_version(name, version)
            except MlflowException as e:
                raise registry_failure(e, name, ref) from None
            return version
        if not ref or not set(ref) <= ALIAS_CHARS or len(ref) > 255:
            raise CatalogError(404, f"No alias {ref[:40]!r}: aliases are letters, digits, _ and -")
        key = (name, ref)
        cached = self._aliases.get(key)
        if cached and time.monotonic() - cached[0] < self.alias_ttl:
            return cached[1]
        try:
            version = str(self.client().get_model_version_by_alias(name, ref).version)
        except MlflowException as e:
            raise registry_failure(e, name, ref) from None
        self._aliases[key] = (time.monotonic(), version)
        return version

    def info(self, name: str, version: str) -> Any:
        """The model's MLmodel metadata (signature), cached per version; no model code runs."""
        from mlflow.models import get_model_info

        key = (name, version)
        if key not in self._info:
            self._info[key] = get_model_info(f"models:/{name}/{version}")
        return self._info[key]

    def example(self, name: str, version: str, columns: list[str]) -> dict[str, Any]:
        """Example inputs of a version for the catalog page: the first row of its logged
        input example, else placeholders (``logged`` False) for ``columns``."""
        logged = self.example_columns(name, version)
        if logged is None or not all(logged.values()):
            row: list[Any] = [0.0] * len(columns)
            return {"columns": columns, "row": row, "record": dict(zip(columns, row, strict=True)),
                    "logged": False}  # fmt: skip
        first = [values[0] for values in logged.values()]
        return {"columns": list(logged), "row": first,
                "record": dict(zip(logged, first, strict=True)), "logged": True}  # fmt: skip

    def example_columns(self, name: str, version: str) -> dict[str, list[Any]] | None:
        """The version's logged input example as columns (a JSON artifact, read as data:
        no model code runs), cached per version; None without one."""
        key = (name, version)
        if key not in self._examples:
            self._examples[key] = self._logged_example(name, version)
        return self._examples[key]

    def _logged_example(self, name: str, version: str) -> dict[str, list[Any]] | None:
        import json
        import tempfile

        import mlflow

        try:
            saved = self.info(name, version).saved_input_example_info or {}
            path = saved.get("artifact_path")
            if saved.get("type") != "dataframe" or not path:
                return None
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}/{path}",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
                with open(local, encoding="utf-8") as f:
                    data = json.load(f)
        except Exception:  # no example, or unreadable: placeholders
            return None
        if saved.get("pandas_orient", "split") == "split" and isinstance(data, dict):
            names = [str(c) for c in data.get("columns") or []]
            rows = [r for r in data.get("data") or [] if isinstance(r, list)]
        elif isinstance(data, list) and data and isinstance(data[0], dict):
            names = [str(c) for c in data[0]]
            rows = [[r.get(c) for c in names] for r in data if isinstance(r, dict)]
        else:
            return None
        if not names or not rows:
            return None
        return {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(names)}

    async def predict(
        self, name: str, version: str, body: bytes, content_type: str, in_thread: Any
    ) -> Answer:
        """The serving worker's answer (files downloaded first, in a thread)."""
        try:
            model_dir = await in_thread(self.files.ensure, name, version)
        except Exception as e:
            raise CatalogError(
                502, f"Cannot download version {version} of {name[:200]!r}: {str(e)[:300]}"
            ) from None
        return await self.serving.invoke(model_key(name, version), model_dir, body, content_type)

    def models(self) -> list[dict[str, Any]]:
        """Every registered model with its versions; a model that cannot be read says why
        (``error``) without hiding the others."""
        client = self.client()
        rows = []
        for registered in client.search_registered_models(max_results=1000):
            try:
                entries = self.versions(client, registered.name)
                error = None
            except Exception as e:  # e.g. ModelNameError: a name no filter can express
                entries, error = [], str(e)[:300]
            rows.append(
                {
                    "name": registered.name,
                    "description": registered.description or "",
                    "owner": (registered.tags or {}).get("dsdata.owner"),
                    "aliases": {a: int(v) for a, v in (registered.aliases or {}).items()},
                    "latest_version": max((e["version"] for e in entries), default=None),
                    "versions": entries,
                    **({"error": error} if error else {}),
                }
            )
        return sorted(rows, key=lambda r: r["name"])

    def versions(self, client: Any, name: str) -> list[dict[str, Any]]:
        versions = client.search_model_versions(name_filter(name), max_results=10000)
        entries = []
        for v in sorted(versions, key=lambda v: int(v.version)):
            try:
                signature = self.info(name, str(v.version)).signature
            except Exception:
                signature = None
            tags = v.tags or {}
            entries.append(
                {
                    "version": int(v.version),
                    "run_id": v.run_id,
                    "source": v.source,
                    "created": v.creation_timestamp,
                    "lineage": {
                        "run": tags.get("dsdata.run_id", v.run_id),
                        "git_sha": tags.get("dsdata.git_sha"),
                        "datasets": {
                            k[len("dsdata.dataset.") :]: val
                            for k, val in tags.items()
                            if k.startswith("dsdata.dataset.")
                        },
                    },
                    "signature": signature_columns(signature),
                }
            )
        return entries
