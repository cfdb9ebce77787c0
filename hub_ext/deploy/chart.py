"""Helm chart values -> hub configuration: the one place the chart's values meet traitlets.

The chart renders what the hub needs (its values without secrets, and the names of the
release's Services) into a ConfigMap mounted at ``$DSPLATFORM_CHART_VALUES``; secrets
arrive as environment variables from the chart's Secrets. In kubernetes mode the embedded
``jupyterhub_config.py`` calls :func:`configure_from_chart`, which reads the file and calls
:func:`apply_chart_values` (pure: values and environment in, config keys out);
:func:`hub_ext.setup.configure` then validates the result as for any other config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traitlets.config import Config

from hub_ext.errors import ConfigError

HUB_PORT = 8081
PROXY_PORT = 8000
PROXY_API_PORT = 8001

_MISSING = object()


def value(values: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """``values["a"]["b"]`` for ``path`` ``"a.b"``; a missing key without default is an error."""
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            if default is not _MISSING:
                return default
            raise ConfigError(f"chart values: key {path!r} is missing")
        node = node[key]
    return node


def secret_env(env: Mapping[str, str], name: str) -> str:
    """A secret the chart passes as an environment variable (from its Secret)."""
    found = env.get(name, "")
    if not found:
        raise ConfigError(f"{name} is not set (the chart sets it from its Secret)")
    return found


def database_url(database: Mapping[str, Any], state_dir: str) -> str:
    """The hub's SQLAlchemy URL; PostgreSQL's password comes from ``PGPASSWORD`` (libpq)."""
    kind = database.get("type")
    if kind == "sqlite-pvc":
        return f"sqlite:///{Path(state_dir) / 'jupyterhub.sqlite'}"
    if kind == "postgresql":
        # the psycopg2 dialect named explicitly: plain postgresql:// fails under SQLAlchemy 2.1
        return (
            f"postgresql+psycopg2://{value(database, 'username')}@{value(database, 'host')}:"
            f"{int(value(database, 'port'))}/{value(database, 'name')}"
        )
    raise ConfigError(f"chart values: database.type {kind!r} is not postgresql or sqlite-pvc")


def sandbox_storage(values: Mapping[str, Any]) -> dict[str, Any]:
    """KubeSpawner volumes: the user's own PVC (home) and the shared volume (RWX): its
    ``cache/`` read-only (the catalog service in the hub pod writes it), its ``dvc-remote/``
    for experiment outputs."""
    storage = value(values, "singleuser.storage", {})
    home = storage.get("homeMountPath") or "/home/jovyan"
    mount = str(value(values, "sharedStorage.mountPath")).rstrip("/")
    shared = {"persistentVolumeClaim": {"claimName": value(values, "sharedStorage.claimName")}}
    settings: dict[str, Any] = {
        "storage_pvc_ensure": True,
        "storage_capacity": storage.get("capacity") or "10Gi",
        "volumes": [
            {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
            {"name": "dsdata", **shared},
        ],
        "volume_mounts": [
            {"name": "home", "mountPath": home},
            {"name": "dsdata", "mountPath": f"{mount}/cache", "subPath": "cache", "readOnly": True},
            {"name": "dsdata", "mountPath": f"{mount}/dvc-remote", "subPath": "dvc-remote"},
        ],
    }
    if storage.get("storageClassName"):
        settings["storage_class"] = storage["storageClassName"]
    return settings


def apply_chart_values(c: Config, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Set the hub configuration ``c`` from the chart's rendered values.

    Args:
        c: the hub's config (``get_config()``), after the embedded defaults.
        values: the ``values.yaml`` document of the chart's hub ConfigMap.
        env: the hub's environment (secrets: ``CONFIGPROXY_AUTH_TOKEN``, ``PGPASSWORD``,
            ``DSPLATFORM_USER_PASSWORD``/``DSPLATFORM_ADMIN_PASSWORD``; ``DSPLATFORM_STATE_DIR``).

    Raises:
        ConfigError: a key or a secret the hub cannot do without is missing.
    """
    hub = value(values, "hub")
    state_dir = env.get("DSPLATFORM_STATE_DIR") or "/srv/jupyterhub"

    # hub and proxy: the proxy runs in its own pod, the hub listens on all addresses
    base_url = str(hub.get("baseUrl") or "/")
    c.JupyterHub.spawner_class = "dsplatform-kube"
    c.JupyterHub.bind_url = f"http://:{PROXY_PORT}{base_url}"
    c.JupyterHub.hub_bind_url = f"http://:{HUB_PORT}"
    c.JupyterHub.hub_connect_url = f"http://{value(values, 'services.hub')}:{HUB_PORT}"
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = (
        f"http://{value(values, 'services.proxyApi')}:{PROXY_API_PORT}"
    )
    c.ConfigurableHTTPProxy.auth_token = secret_env(env, "CONFIGPROXY_AUTH_TOKEN")
    c.JupyterHub.cleanup_servers = False  # a hub restart (upgrade) leaves sandboxes running
    c.JupyterHub.allow_named_servers = bool(hub.get("allowNamedServers", False))
    c.JupyterHub.concurrent_spawn_limit = int(hub.get("concurrentSpawnLimit", 64))
    c.JupyterHub.active_server_limit = int(hub.get("activeServerLimit", 0))

    database = value(values, "database")
    c.JupyterHub.db_url = database_url(database, state_dir)
    if database.get("type") == "postgresql":
        secret_env(env, "PGPASSWORD")

    # authentication (OAuth itself is configured from OAUTH_* by hub_ext.deploy.oauth)
    auth = value(values, "auth")
    c.Authenticator.admin_users = set(auth.get("adminUsers") or [])
    if auth.get("type") == "shared-password":
        c.JupyterHub.authenticator_class = "shared-password"
        c.SharedPasswordAuthenticator.user_password = secret_env(env, "DSPLATFORM_USER_PASSWORD")
        c.SharedPasswordAuthenticator.admin_password = secret_env(env, "DSPLATFORM_ADMIN_PASSWORD")
        c.Authenticator.allow_all = True
        c.JupyterHub.load_groups = {
            name: {"users": list(members)} for name, members in (auth.get("groups") or {}).items()
        }
    elif auth.get("type") != "oauth":
        raise ConfigError(f"chart values: auth.type {auth.get('type')!r} is not known")

    # the platform: what an admin writes in jupyterhub_config.py
    platform = value(values, "platform")
    quotas = value(platform, "quotas", {})
    datasets = value(platform, "datasets", {})
    c.ProfileSpawner.toolchains = dict(value(values, "platform.toolchains"))
    c.ProfileSpawner.profiles = list(value(values, "platform.profiles"))
    c.QuotaPolicy.default = dict(quotas.get("default") or {})
    c.QuotaPolicy.groups = dict(quotas.get("groups") or {})
    c.QuotaPolicy.users = dict(quotas.get("users") or {})
    c.QuotaPolicy.group_pools = dict(quotas.get("groupPools") or {})
    c.QuotaPolicy.pools = dict(quotas.get("pools") or {})
    c.DatasetCatalog.registries = list(datasets.get("registries") or [])
    c.DatasetCatalog.dataset_groups = dict(datasets.get("groups") or {})
    # connections; their secrets are the pod's env (connectionSecrets), checked by configure()
    c.DataConnections.connections = dict(platform.get("connections") or {})
    c.ProfileKubeSpawner.gpu_resource_name = platform.get("gpuResourceName") or "nvidia.com/gpu"
    c.ProfileKubeSpawner.gpu_scheduling = dict(platform.get("gpuScheduling") or {})
    culling = value(values, "culling", {})
    c.PlatformIdleCulling.timeout = int(culling.get("timeout", 3600))
    c.PlatformIdleCulling.gpu_timeout = int(culling.get("gpuTimeout", 1800))
    c.PlatformIdleCulling.cull_every = int(culling.get("cullEvery", 0))

    # MLflow runs in its own Deployment; the catalog in the hub pod, behind the hub Service
    c.PlatformMLflow.enabled = False
    c.PlatformMLflow.external_url = value(values, "services.mlflowUrl")
    catalog = value(values, "catalog")
    c.PlatformCatalog.enabled = bool(catalog.get("enabled", True))
    c.PlatformCatalog.port = int(catalog.get("port", 10101))
    c.PlatformCatalog.host = value(values, "services.hub")
    c.PlatformCatalog.bind_ip = "0.0.0.0"
    c.PlatformCatalog.predict_groups = list(catalog.get("predictGroups") or [])
    c.PlatformCatalog.max_request_bytes = int(catalog.get("maxRequestBytes", 1 << 20))
    governance = catalog.get("governance") or {}
    dask = dict(values.get("dask") or {})  # schedulers and workers as pods (kube backend)
    c.DaskClusters.enabled = bool(dask.get("enabled", False))
    c.DaskClusters.host = value(values, "services.hub")
    c.DaskClusters.bind_ip = "0.0.0.0"
    c.DaskClusters.port = int(dask.get("port", 10102))
    c.DaskClusters.scheduler_port = int(dask.get("schedulerPort", 10103))
    c.DaskClusters.max_workers = int(dask.get("maxWorkers", 16))
    c.DaskClusters.idle_timeout = float(dask.get("idleTimeout", 3600))
    c.DaskClusters.scheduler_cpu = float(dask.get("schedulerCpu", 0.5))
    c.DaskClusters.scheduler_memory = str(dask.get("schedulerMemory", "512M"))
    c.ModelGovernance.protected_aliases = list(governance.get("protectedAliases") or [])
    c.ModelGovernance.approver_groups = list(governance.get("approverGroups") or [])
    c.ModelGovernance.gate_metric = str(governance.get("gateMetric") or "")
    c.ModelGovernance.gate_metric_direction = str(governance.get("gateMetricDirection") or "higher")
    # models run in the chart's serving Deployment, never in the hub pod
    serving = catalog.get("serving") or {}
    c.ModelServing.manager_url = f"http://{value(values, 'services.serving')}:8000"
    c.ModelServing.max_workers = int(serving.get("maxWorkers", 4))
    c.ModelServing.start_timeout = float(serving.get("startTimeout", 120))
    c.ModelServing.request_timeout = float(serving.get("requestTimeout", 30))
    mlflow = value(values, "mlflow", {})
    c.PlatformMLflow.default_permission = str(mlflow.get("defaultPermission") or "READ")
    c.PlatformMLflow.sharing_groups = list(mlflow.get("sharingGroups") or [])

    # sandboxes: KubeSpawner pods in the release's namespace
    singleuser = value(values, "singleuser")
    mount = str(value(values, "sharedStorage.mountPath")).rstrip("/")
    c.ProfileSpawner.dataset_cache_dir = f"{mount}/cache"
    c.ProfileSpawner.dvc_remote = platform.get("dvcRemote") or f"{mount}/dvc-remote"
    c.KubeSpawner.namespace = value(values, "release.namespace")
    c.KubeSpawner.common_labels = {  # the chart's NetworkPolicies select sandboxes by these
        **dict(value(values, "sandboxLabels")),
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    c.KubeSpawner.uid = int(singleuser.get("uid", 1000))
    c.KubeSpawner.fs_gid = int(singleuser.get("fsGid", 100))
    c.KubeSpawner.default_url = singleuser.get("defaultUrl") or "/lab"
    c.KubeSpawner.start_timeout = int(singleuser.get("startTimeout", 300))
    c.KubeSpawner.image_pull_policy = singleuser.get("imagePullPolicy") or "IfNotPresent"
    c.KubeSpawner.image_pull_secrets = list(singleuser.get("imagePullSecrets") or [])
    c.KubeSpawner.node_selector = dict(singleuser.get("nodeSelector") or {})
    c.KubeSpawner.automount_service_account_token = False
    for name, setting in sandbox_storage(values).items():
        setattr(c.KubeSpawner, name, setting)
    # the chart's home PVC is the workspace (DSPLATFORM_WORKSPACE, the preload's target)
    c.ProfileKubeSpawner.workspace_path = str(
        value(values, "singleuser.storage", {}).get("homeMountPath") or "/home/jovyan"
    )


def load_chart_values(path: str | Path) -> dict[str, Any]:
    """The chart's values document (YAML) at ``path``."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"DSPLATFORM_CHART_VALUES: cannot read {path}: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"DSPLATFORM_CHART_VALUES: {path} is not a YAML mapping")
    return loaded


def configure_from_chart(c: Config, path: str | Path, env: Mapping[str, str]) -> None:
    """Kubernetes mode: apply the mounted chart values, or stop the hub naming the key."""
    from hub_ext.errors import stop_invalid

    try:
        apply_chart_values(c, load_chart_values(path), env)
    except ConfigError as e:
        stop_invalid(e)
