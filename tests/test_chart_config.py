"""Chart values -> hub configuration (hub_ext.deploy.chart), and the settings it relies on:
an external MLflow (PlatformMLflow.external_url) and a catalog reached by a Service name
(PlatformCatalog.host / bind_ip). The chart's own rendering is in tests/test_helm_chart.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from hub_ext.deploy.chart import apply_chart_values, configure_from_chart, database_url
from hub_ext.errors import ConfigError
from hub_ext.services.catalog.config import PlatformCatalog, catalog_service
from hub_ext.setup import configure

from .catalog_entry import catalog_from_entry

VALUES: dict[str, Any] = {
    "release": {"name": "dsp", "namespace": "data"},
    "sandboxLabels": {"app.kubernetes.io/name": "dsplatform", "app.kubernetes.io/instance": "dsp"},
    "services": {
        "hub": "dsp-dsplatform-hub",
        "proxyApi": "dsp-dsplatform-proxy-api",
        "mlflowUrl": "http://dsp-dsplatform-mlflow:5000",
        "serving": "dsp-dsplatform-serving",
    },
    "database": {
        "type": "postgresql",
        "host": "dsp-dsplatform-postgresql",
        "port": 5432,
        "name": "jupyterhub",
        "username": "dsplatform",
    },
    "hub": {
        "baseUrl": "/",
        "allowNamedServers": False,
        "concurrentSpawnLimit": 64,
        "activeServerLimit": 0,
    },
    "auth": {"type": "shared-password", "adminUsers": ["ada"], "groups": {"ml": ["alice"]}},
    "platform": {
        "toolchains": {"scipy": {"image": "quay.io/jupyter/scipy-notebook:2025-10-20"}},
        "profiles": [{"slug": "cpu", "toolchain": "scipy", "cpu": 1, "memory": "1G"}],
        "quotas": {
            "default": {"servers": 1},
            "groups": {"ml": {"servers": 2}},
            "users": {},
            "groupPools": {"ml": {"gpus": 4}},
            "pools": {"nvidia-a100": 8},
        },
        "gpuResourceName": "nvidia.com/gpu",
        "gpuScheduling": {"nvidia-a100": {"node_selector": {"gpu": "a100"}}},
        "datasets": {"registries": ["https://git.example.org/r.git"], "groups": {"churn": ["ml"]}},
        "dvcRemote": "",
    },
    "culling": {"timeout": 7200, "gpuTimeout": 900, "cullEvery": 60},
    "singleuser": {
        "uid": 1000,
        "fsGid": 100,
        "defaultUrl": "/lab",
        "startTimeout": 300,
        "imagePullPolicy": "IfNotPresent",
        "imagePullSecrets": ["regcred"],
        "storage": {"capacity": "10Gi", "storageClassName": "", "homeMountPath": "/home/jovyan"},
        "nodeSelector": {},
    },
    "sharedStorage": {"claimName": "dsp-dsplatform-dsdata", "mountPath": "/srv/dsdata/"},
    "catalog": {
        "enabled": True,
        "port": 10101,
        "predictGroups": ["product"],
        "maxRequestBytes": 1024,
    },
}
ENV = {
    "CONFIGPROXY_AUTH_TOKEN": "proxy-token",
    "PGPASSWORD": "pg",
    "DSPLATFORM_USER_PASSWORD": "user-password",
    "DSPLATFORM_ADMIN_PASSWORD": "a" * 32,
    "DSPLATFORM_STATE_DIR": "/srv/jupyterhub",
}


def applied(values: dict[str, Any] = VALUES, env: dict[str, str] = ENV) -> Config:
    c = Config()
    apply_chart_values(c, values, env)
    return c


def test_hub_proxy_and_database() -> None:
    c = applied()
    assert c.JupyterHub.spawner_class == "dsplatform-kube"
    assert c.JupyterHub.bind_url == "http://:8000/"
    assert c.JupyterHub.hub_bind_url == "http://:8081"
    assert c.JupyterHub.hub_connect_url == "http://dsp-dsplatform-hub:8081"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://dsp-dsplatform-proxy-api:8001"
    assert c.ConfigurableHTTPProxy.auth_token == "proxy-token"
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.concurrent_spawn_limit == 64
    assert c.JupyterHub.db_url == (
        "postgresql+psycopg2://dsplatform@dsp-dsplatform-postgresql:5432/jupyterhub"
    )


def test_platform_values_become_the_admin_config() -> None:
    c = applied()
    assert c.ProfileSpawner.profiles == VALUES["platform"]["profiles"]
    assert c.ProfileSpawner.toolchains == VALUES["platform"]["toolchains"]
    assert c.QuotaPolicy.group_pools == {"ml": {"gpus": 4}}
    assert c.QuotaPolicy.pools == {"nvidia-a100": 8}
    assert c.DatasetCatalog.dataset_groups == {"churn": ["ml"]}
    assert c.DataConnections.connections == VALUES["platform"].get("connections", {})
    assert c.ProfileKubeSpawner.gpu_scheduling == {
        "nvidia-a100": {"node_selector": {"gpu": "a100"}}
    }
    assert (c.PlatformIdleCulling.timeout, c.PlatformIdleCulling.gpu_timeout) == (7200, 900)
    assert c.SharedPasswordAuthenticator.user_password == "user-password"
    assert c.Authenticator.admin_users == {"ada"}
    assert c.JupyterHub.load_groups == {"ml": {"users": ["alice"]}}


def test_sandboxes_get_the_release_services_and_volumes() -> None:
    c = applied()
    assert c.KubeSpawner.namespace == "data"
    assert c.KubeSpawner.common_labels == {
        "app.kubernetes.io/name": "dsplatform",
        "app.kubernetes.io/instance": "dsp",
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    assert c.KubeSpawner.volumes == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        {"name": "dsdata", "persistentVolumeClaim": {"claimName": "dsp-dsplatform-dsdata"}},
    ]
    assert c.KubeSpawner.volume_mounts == [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "dsdata", "mountPath": "/srv/dsdata/cache", "subPath": "cache", "readOnly": True},
        {"name": "dsdata", "mountPath": "/srv/dsdata/dvc-remote", "subPath": "dvc-remote"},
    ]
    assert "storage_class" not in c.KubeSpawner  # the cluster's default StorageClass
    assert c.ProfileSpawner.dataset_cache_dir == "/srv/dsdata/cache"
    assert c.ProfileSpawner.dvc_remote == "/srv/dsdata/dvc-remote"
    assert c.ProfileKubeSpawner.workspace_path == "/home/jovyan"


def test_the_home_mount_is_the_workspace() -> None:
    values = copy.deepcopy(VALUES)
    values["singleuser"]["storage"]["homeMountPath"] = "/home/user"
    c = applied(values)
    assert {"name": "home", "mountPath": "/home/user"} in c.KubeSpawner.volume_mounts
    assert c.ProfileKubeSpawner.workspace_path == "/home/user"
    assert c.KubeSpawner.image_pull_secrets == ["regcred"]
    assert c.KubeSpawner.automount_service_account_token is False


def test_configure_accepts_it_and_wires_mlflow_and_the_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the hub pod's environment from the hub Secret
    monkeypatch.setenv("DSPLATFORM_SERVING_SECRET", "serving-secret-0123456789")
    monkeypatch.setenv("DSPLATFORM_MLFLOW_SERVICE_TOKEN", "mlflow-token-0123456789")
    monkeypatch.setenv("PGPASSWORD", "pg-password")
    c = applied()
    configure(c)
    assert c.ProfileSpawner.mlflow_tracking_uri == "http://dsp-dsplatform-mlflow:5000"
    services = {s["name"]: s for s in c.JupyterHub.services}
    # the chart runs MLflow; the hub knows it by its token (it looks up users' tokens)
    assert services["mlflow"] == {"name": "mlflow", "api_token": "mlflow-token-0123456789"}
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["dsplatform-mlflow"]["services"] == ["mlflow"]
    assert roles["dsplatform-mlflow"]["scopes"] == ["read:users"]
    catalog = services["catalog"]
    # models are served by the serving Deployment; the promotion history is in PostgreSQL
    assert c.ModelServing.manager_url == "http://dsp-dsplatform-serving:8000"
    assert catalog["environment"]["DSPLATFORM_SERVING_SECRET"] == "serving-secret-0123456789"
    assert c.ModelGovernance.db_url == c.JupyterHub.db_url
    assert catalog["environment"]["PGPASSWORD"] == "pg-password"
    assert catalog["url"] == "http://dsp-dsplatform-hub:10101"
    assert catalog_from_entry(catalog).listen_address() == ("0.0.0.0", 10101)
    assert catalog["environment"]["MLFLOW_TRACKING_URI"] == "http://dsp-dsplatform-mlflow:5000"
    assert c.ProfileSpawner.catalog_url == (
        "http://dsp-dsplatform-hub:10101/services/catalog/api/datasets"
    )


def with_changes(**changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(VALUES)
    for path, new in changes.items():
        *parents, last = path.split("__")
        node = values
        for key in parents:
            node = node[key]
        if new is None:
            del node[last]
        else:
            node[last] = new
    return values


def test_oauth_leaves_login_to_the_oauth_config() -> None:
    c = applied(with_changes(auth__type="oauth"))
    assert "authenticator_class" not in c.JupyterHub
    assert "load_groups" not in c.JupyterHub  # the identity provider's groups
    assert c.Authenticator.admin_users == {"ada"}


@pytest.mark.parametrize(
    ("database", "url"),
    [
        ({"type": "sqlite-pvc"}, "sqlite:////srv/jupyterhub/jupyterhub.sqlite"),
        (
            {
                "type": "postgresql",
                "host": "db.example.org",
                "port": 5433,
                "name": "hub",
                "username": "hub",
            },
            "postgresql+psycopg2://hub@db.example.org:5433/hub",
        ),
    ],
)
def test_database_url(database: dict, url: str) -> None:
    assert database_url(database, "/srv/jupyterhub") == url


@pytest.mark.parametrize(
    ("values", "env_drop", "message"),
    [
        (VALUES, "CONFIGPROXY_AUTH_TOKEN", "CONFIGPROXY_AUTH_TOKEN is not set"),
        (VALUES, "PGPASSWORD", "PGPASSWORD is not set"),
        (VALUES, "DSPLATFORM_USER_PASSWORD", "DSPLATFORM_USER_PASSWORD is not set"),
        (with_changes(services__hub=None), None, "chart values: key 'services.hub' is missing"),
        (with_changes(platform__profiles=None), None, "key 'platform.profiles' is missing"),
        (with_changes(auth__type="ldap"), None, "auth.type 'ldap' is not known"),
        (with_changes(database__type="mysql"), None, "database.type 'mysql' is not"),
    ],
)
def test_what_the_hub_cannot_do_without_is_named(
    values: dict, env_drop: str | None, message: str
) -> None:
    env = {k: v for k, v in ENV.items() if k != env_drop}
    with pytest.raises(ConfigError) as raised:
        applied(values, env)
    assert message in str(raised.value)


def test_a_mounted_file_that_is_not_yaml_stops_the_hub(tmp_path: Path, capsys) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SystemExit) as exited:
        configure_from_chart(Config(), path, ENV)
    assert exited.value.code == 1
    assert "DSPLATFORM_CHART_VALUES: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        configure_from_chart(Config(), tmp_path / "missing.yaml", ENV)
    assert "cannot read" in capsys.readouterr().err


# --- PlatformMLflow.external_url and PlatformCatalog.host/bind_ip ---------------------------


def base_config() -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.profiles = [{"slug": "a"}]
    return c


def test_external_mlflow_points_sandboxes_at_it_without_a_service() -> None:
    c = base_config()
    c.PlatformMLflow.external_url = "http://mlflow.example.org:5000"
    configure(c)
    assert c.ProfileSpawner.mlflow_tracking_uri == "http://mlflow.example.org:5000"
    assert "mlflow" not in [s["name"] for s in c.JupyterHub.get("services", [])]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"PlatformMLflow": {"enabled": True, "external_url": "http://m:5000"}}, "not both"),
        ({"PlatformMLflow": {"external_url": "mlflow:5000"}}, "is not an http(s) URL"),
        ({"PlatformCatalog": {"enabled": True, "host": "http://hub"}}, "c.PlatformCatalog.host"),
        ({"PlatformCatalog": {"enabled": True, "host": ""}}, "c.PlatformCatalog.host"),
        ({"PlatformCatalog": {"bind_ip": "0.0.0.0:80"}}, "c.PlatformCatalog.bind_ip"),
    ],
)
def test_contradictory_service_settings_stop_the_hub(settings: dict, message: str, capsys) -> None:
    c = base_config()
    c.merge(Config(settings))
    with pytest.raises(SystemExit):
        configure(c)
    assert message in capsys.readouterr().err


def test_catalog_listens_where_the_service_name_leads() -> None:
    def entry(**settings: Any) -> dict[str, Any]:
        c = Config({"PlatformCatalog": settings})
        return catalog_service(c, PlatformCatalog(config=c), tracking_uri="")

    local = entry(port=10101)
    assert local["url"] == "http://127.0.0.1:10101"
    assert catalog_from_entry(local).listen_address() == ("127.0.0.1", 10101)
    kube = entry(host="hub", bind_ip="0.0.0.0")
    assert kube["url"] == "http://hub:10101"
    assert catalog_from_entry(kube).listen_address() == ("0.0.0.0", 10101)
