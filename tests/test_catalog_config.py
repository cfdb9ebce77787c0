"""Pure parts of the catalog: OpenAPI from signatures, roles and hub wiring."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from traitlets.config import Config

from hub_ext.connections.settings import DataConnections
from hub_ext.datasets.catalog import DatasetCatalog
from hub_ext.monitoring.settings import PlatformMonitoring
from hub_ext.services.catalog.config import ACCESS, PREDICT_SCOPE, PlatformCatalog, catalog_roles
from hub_ext.services.catalog.openapi import model_openapi, signature_columns
from hub_ext.setup import configure

from .catalog_entry import catalog_from_entry

SIGNATURE = ModelSignature(
    inputs=Schema(
        [ColSpec("double", "tenure"), ColSpec("long", "calls"), ColSpec("string", "plan")]
    ),
    outputs=Schema([ColSpec("long")]),
)


def test_signature_columns() -> None:
    assert signature_columns(None) is None
    assert signature_columns(SIGNATURE) == {
        "inputs": [
            {"name": "tenure", "type": "double"},
            {"name": "calls", "type": "long"},
            {"name": "plan", "type": "string"},
        ],
        "outputs": [{"name": None, "type": "long"}],
    }


def test_openapi_from_signature() -> None:
    doc = model_openapi(
        "churn", "production", "3", SIGNATURE, "/services/catalog/api/models/churn/production"
    )
    post = doc["paths"]["/services/catalog/api/models/churn/production/predict"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    split, records, inputs = body["schema"]["oneOf"]
    assert inputs["required"] == ["inputs"]
    assert split["properties"]["dataframe_split"]["properties"]["columns"]["items"]["enum"] == [
        "tenure", "calls", "plan",
    ]  # fmt: skip
    record = records["properties"]["dataframe_records"]["items"]
    assert record["properties"] == {
        "tenure": {"type": "number"}, "calls": {"type": "integer"}, "plan": {"type": "string"},
    }  # fmt: skip
    assert record["required"] == ["tenure", "calls", "plan"]
    assert body["example"] == {
        "dataframe_split": {"columns": ["tenure", "calls", "plan"], "data": [[0, 0, 0]]}
    }
    assert set(post["responses"]) == {"200", "400", "401", "403", "404", "413"}
    assert doc["info"]["title"] == "churn (production -> version 3)"
    # no signature: still a valid document, columns unconstrained
    bare = model_openapi("m", "1", "1", None, "/x")
    assert (
        "enum"
        not in bare["paths"]["/x/predict"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]["oneOf"][0]["properties"]["dataframe_split"]["properties"]["columns"]["items"]
    )


@pytest.mark.parametrize(
    ("existing", "user_scopes"),
    [
        ([], ["self", ACCESS]),
        ([{"name": "user", "scopes": ["self", "read:groups"]}], ["self", "read:groups", ACCESS]),
        ([{"name": "user", "scopes": ["self", ACCESS]}], ["self", ACCESS]),
    ],
)
def test_roles(existing: list, user_scopes: list) -> None:
    settings = PlatformCatalog(
        config=Config({"PlatformCatalog": {"predict_groups": ["product", "ml"]}})
    )
    roles = {r["name"]: r for r in catalog_roles(settings, [dict(r) for r in existing])}
    assert roles["user"]["scopes"] == user_scopes
    assert roles["dsplatform-predict"] == {
        "name": "dsplatform-predict",
        "description": "Call the catalog's prediction APIs",
        "scopes": [PREDICT_SCOPE, ACCESS],
        "groups": ["product", "ml"],
    }
    assert roles["dsplatform-catalog"]["scopes"] == ["read:users:name", "read:users:groups"]
    assert roles["dsplatform-catalog"]["services"] == ["catalog"]


def test_configure_wires_the_catalog() -> None:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.profiles = [{"slug": "a"}]
    c.PlatformCatalog.enabled = True
    c.PlatformCatalog.port = 12345
    c.DatasetCatalog.registries = ["/r"]
    c.DatasetCatalog.dataset_groups = {"churn": ["ml"]}
    configure(c)
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "catalog"]
    assert service["url"] == "http://127.0.0.1:12345"
    assert service["command"][1:] == ["-m", "hub_ext.services.catalog"]
    app = catalog_from_entry(service)
    assert app.dataset_groups == {"churn": ("ml",)}
    assert app.datasets.registries == ["/r"]
    assert PREDICT_SCOPE in c.JupyterHub.custom_scopes
    assert ACCESS in c.Spawner.server_token_scopes
    assert "users:activity!user" in c.Spawner.server_token_scopes
    assert c.ProfileSpawner.catalog_url == "http://127.0.0.1:12345/services/catalog/api/datasets"


@pytest.mark.parametrize(
    ("hub", "ui"),
    [
        ({}, "/services/catalog/mlflow/"),
        ({"base_url": "/jhub/"}, "/jhub/services/catalog/mlflow/"),
        (
            {"public_url": "https://hub.example.org/jhub/"},
            "https://hub.example.org/jhub/services/catalog/mlflow/",
        ),
    ],
)
def test_sandboxes_link_to_the_mlflow_ui_behind_the_hub_login(hub: dict[str, str], ui: str) -> None:
    def configured(**spawner: str) -> Config:
        c = Config()
        c.JupyterHub.spawner_class = "dsplatform-local"
        for key, value in hub.items():
            setattr(c.JupyterHub, key, value)
        c.ProfileSpawner.profiles = [{"slug": "a"}]
        c.PlatformCatalog.enabled = True
        c.PlatformMLflow.external_url = "http://mlflow.internal:5000"
        for key, value in spawner.items():
            setattr(c.ProfileSpawner, key, value)
        configure(c)
        return c

    c = configured()
    assert c.ProfileSpawner.mlflow_tracking_uri == "http://mlflow.internal:5000"
    assert c.ProfileSpawner.mlflow_ui_url == ui
    # an admin's own UI address (e.g. behind their SSO) is kept
    assert configured(mlflow_ui_url="https://mlflow.example.org/").ProfileSpawner.mlflow_ui_url == (
        "https://mlflow.example.org/"
    )
    # no HTTP tracking server, no UI route to link to
    assert "mlflow_ui_url" not in configured(mlflow_tracking_uri="sqlite:///x.db").ProfileSpawner


def test_configure_without_the_catalog_leaves_the_hub_alone() -> None:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.profiles = [{"slug": "a"}]
    configure(c)
    assert "catalog" not in [s.get("name") for s in c.JupyterHub.get("services", [])]
    # sandboxes read the hub's own dataset API instead: JupyterHub's defaults plus its scope
    # (and their user's notebook jobs)
    assert c.Spawner.server_token_scopes == [
        "users:activity!user", "access:servers!server", "custom:dsplatform:datasets",
        "custom:dsplatform:jobs",
    ]  # fmt: skip


def test_every_setting_of_the_catalog_reaches_the_service() -> None:
    """Each trait is declared once (PlatformCatalog, DatasetCatalog) and configure() hands
    every one to the service process: set each to a value unlike its default."""
    changed: dict[str, dict[str, Any]] = {
        "PlatformCatalog": {
            "enabled": True,
            "port": 12346,
            "host": "catalog.internal",
            "bind_ip": "0.0.0.0",
            "predict_groups": ["quants"],
            "max_request_bytes": 12345,
        },
        "DatasetCatalog": {
            "registries": ["/srv/registry"],
            "dataset_groups": {"churn": ["ml"]},
            "metadata_dir": "/srv/metadata",
            "refresh_seconds": 5,
        },
        "PlatformMonitoring": {
            "enabled": False,
            "sample_size": 77,
            "sample_rate": 0.5,
            "max_versions": 3,
            "max_features": 9,
            "min_window": 11,
            "drift_p_value": 0.05,
            "reference_rows": 99,
            "drift_interval": 7,
        },
        "DataConnections": {
            "connections": {"wh": {"type": "sql", "url_env": "WH_URL", "groups": ["ml"]}},
            "registry": "/srv/imports",
            "import_timeout": 99,
        },
    }
    for cls in (PlatformCatalog, DatasetCatalog, PlatformMonitoring, DataConnections):
        assert set(changed[cls.__name__]) == set(cls.class_trait_names(config=True)), (
            f"a new {cls.__name__} trait: add it here with a value unlike its default"
        )
        defaults = cls()
        for name, value in changed[cls.__name__].items():
            assert getattr(defaults, name) != value
    c = Config(changed)
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.profiles = [{"slug": "a"}]
    with mock.patch.dict(os.environ, {"WH_URL": "sqlite://"}):
        configure(c)
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "catalog"]
    app = catalog_from_entry(service)
    for name, value in changed["PlatformCatalog"].items():
        assert getattr(app.catalog, name) == value, name
    for name, value in changed["DatasetCatalog"].items():
        expected = [*value, "/srv/imports"] if name == "registries" else value  # imports too
        assert getattr(app.datasets, name) == expected, name
    for name, value in changed["PlatformMonitoring"].items():
        assert getattr(app.monitoring, name) == value, name
    for name, value in changed["DataConnections"].items():
        assert getattr(app.data_connections, name) == value, name
    assert service["environment"]["WH_URL"] == "sqlite://"  # its secret, for its imports
    assert app._listing.refresh == 5  # what the running listing uses
    assert app.max_request_bytes == 12345
    assert app.listen_address() == ("0.0.0.0", 12346)
