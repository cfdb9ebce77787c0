"""The prediction gateway: registered models, loaded once per version, aliases re-resolved.

Used by the catalog's handlers from worker threads (MLflow's client and model loading block).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

from hub_ext.services.catalog.openapi import signature_columns


class ModelGateway:
    """Registered models, loaded once per version; aliases re-resolved every few seconds."""

    def __init__(self, tracking_uri: str, alias_ttl: float = 2.0, max_models: int = 8) -> None:
        self.tracking_uri = tracking_uri
        self.alias_ttl = alias_ttl
        self.max_models = max_models
        self._aliases: dict[tuple[str, str], tuple[float, str]] = {}
        self._models: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._info: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def resolve(self, name: str, ref: str) -> str:
        """The version number a ``ref`` (a version or an alias) names now."""
        if ref.isdigit():
            self.client().get_model_version(name, ref)  # raises when it does not exist
            return ref
        key = (name, ref)
        cached = self._aliases.get(key)
        if cached and time.monotonic() - cached[0] < self.alias_ttl:
            return cached[1]
        version = str(self.client().get_model_version_by_alias(name, ref).version)
        self._aliases[key] = (time.monotonic(), version)
        return version

    def model(self, name: str, version: str) -> Any:
        import mlflow.pyfunc

        key = (name, version)
        with self._lock:  # one load per version, even for simultaneous first requests
            if key not in self._models:
                self._models[key] = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return self._models[key]

    def info(self, name: str, version: str) -> Any:
        """The model's MLmodel metadata (signature), cached per version."""
        from mlflow.models import get_model_info

        key = (name, version)
        if key not in self._info:
            self._info[key] = get_model_info(f"models:/{name}/{version}")
        return self._info[key]

    def predict(self, name: str, version: str, body: bytes, content_type: str) -> tuple[int, str]:
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        model = self.model(name, version)
        try:
            response = scoring_server.invocations(
                body, content_type, model, model.metadata.get_input_schema()
            )
        except MlflowException as e:
            return e.get_http_status_code(), json.dumps(
                {"message": e.message, "error_code": e.error_code}
            )
        if response.mimetype != "application/json":
            return response.status, json.dumps({"message": str(response.response)})
        return response.status, str(response.response)

    def models(self) -> list[dict[str, Any]]:
        client = self.client()
        rows = []
        for registered in client.search_registered_models():
            versions = client.search_model_versions(f"name='{registered.name}'")
            entries = []
            for v in sorted(versions, key=lambda v: int(v.version)):
                try:
                    signature = self.info(registered.name, str(v.version)).signature
                except Exception:
                    signature = None
                entries.append(
                    {
                        "version": int(v.version),
                        "run_id": v.run_id,
                        "source": v.source,
                        "created": v.creation_timestamp,
                        "lineage": {
                            "run": (v.tags or {}).get("dsdata.run_id", v.run_id),
                            "git_sha": (v.tags or {}).get("dsdata.git_sha"),
                            "datasets": {
                                k[len("dsdata.dataset.") :]: val
                                for k, val in (v.tags or {}).items()
                                if k.startswith("dsdata.dataset.")
                            },
                        },
                        "signature": signature_columns(signature),
                    }
                )
            rows.append(
                {
                    "name": registered.name,
                    "description": registered.description or "",
                    "owner": (registered.tags or {}).get("dsdata.owner"),
                    "aliases": {a: int(v) for a, v in (registered.aliases or {}).items()},
                    "latest_version": max((e["version"] for e in entries), default=None),
                    "versions": entries,
                }
            )
        return sorted(rows, key=lambda r: r["name"])
