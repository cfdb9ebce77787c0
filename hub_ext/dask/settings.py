"""Dask clusters on the governed pool: ``c.DaskClusters`` and how the hub runs dask-gateway.

The gateway (``dask-gateway-server``) is a hub-managed service named ``dask-gateway``: the
hub's proxy routes ``/services/dask-gateway/`` to it, it knows users by their hub token
(dask-gateway's ``JupyterHubAuthenticator``, with the ``access:services!service=dask-gateway``
scope that every user's role and sandbox token holds), and its backend
(:mod:`hub_ext.dask.backend`) admits every worker through the hub's ledger
(:mod:`hub_ext.dask.grants`). Sandboxes get dask-gateway's own variables, so
``Gateway().new_cluster()`` needs no arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Config, Configurable

from hub_ext.admission.units import parse_bytes
from hub_ext.dask.grants import SchedulerSize
from hub_ext.errors import ConfigError, check_service_addresses
from hub_ext.state import state_dir

SERVICE = "dask-gateway"
ACCESS = f"access:services!service={SERVICE}"
WORKERS_SCOPE = "custom:dsplatform:workers"  # admit and release workers: the gateway only
ROLE = "dsplatform-dask-gateway"
PREFIX = f"/services/{SERVICE}"


class DaskClusters(Configurable):
    """Dask clusters through dask-gateway, workers admitted by the hub's quotas."""

    enabled = Bool(
        False,
        help="""Run dask-gateway as a hub-managed service. Beside the local spawner its
        backend runs schedulers and workers as the user's account, each in its own cgroup;
        beside dsplatform-kube, as pods in the sandboxes' namespace (the chart's
        dask.enabled). The embedded config turns this on.

            c.DaskClusters.enabled = True
        """,
    ).tag(config=True)

    host = Unicode(
        "127.0.0.1",
        help="""Host under which the hub's proxy, sandboxes and Dask pods reach the gateway
        (on Kubernetes the hub's Service name).""",
    ).tag(config=True)

    bind_ip = Unicode(
        "",
        help="""Address the gateway listens on; default: `host` (on Kubernetes "0.0.0.0",
        since the Service name is not an address of the hub pod).

            c.DaskClusters.bind_ip = "0.0.0.0"
        """,
    ).tag(config=True)

    port = Int(
        10102,
        help="""Port of the gateway's HTTP API (its own proxy; the hub routes
        /services/dask-gateway/ there).""",
    ).tag(config=True)

    scheduler_port = Int(
        10103,
        help="""Port of the gateway's TLS proxy to the clusters' schedulers (clients connect
        with gateway://HOST:PORT).""",
    ).tag(config=True)

    api_port = Int(10104, help="Port of the gateway's private API (127.0.0.1).").tag(config=True)

    max_workers = Int(
        16,
        help="""The most workers one cluster may ask for (quotas and pools still bound the
        total).

            c.DaskClusters.max_workers = 16
        """,
    ).tag(config=True)

    idle_timeout = Float(
        3600,
        help="""Seconds a cluster may stay idle (no tasks, no client) before it is shut down
        and its workers' grants are given back; 0: never.""",
    ).tag(config=True)

    scheduler_cpu = Float(
        0.5,
        help="""CPUs a cluster's scheduler holds (admitted like a worker when the cluster is
        created, in its own cgroup; the profile's ranges do not apply).""",
    ).tag(config=True)

    scheduler_memory = Unicode(
        "512M",
        help="""Memory a cluster's scheduler holds (e.g. "512M").""",
    ).tag(config=True)

    heartbeat_period = Int(
        5,
        help="""Seconds between a scheduler's reports to the gateway (a stopped worker is
        noticed, and its grant given back, within about this long).""",
    ).tag(config=True)

    state_dir = Unicode(
        "",
        help="The clusters' working directories (default: $DSPLATFORM_STATE_DIR/dask).",
    ).tag(config=True)


LOCAL_BACKEND = "hub_ext.dask.backend.PlatformBackend"
KUBE_BACKEND = "hub_ext.dask.kube_backend.PlatformKubeBackend"
# what the gateway needs of the hub's environment to reach the Kubernetes API
KUBE_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


def backend_for(spawner_class: type | None) -> str:
    """The gateway backend that runs workers where this spawner runs sandboxes, or
    ConfigError: the local spawner's machine (accounts, cgroups) or dsplatform-kube's
    namespace (pods)."""
    from hub_ext.spawners.local import LocalProfileSpawner

    if spawner_class is None or issubclass(spawner_class, LocalProfileSpawner):
        return LOCAL_BACKEND
    from hub_ext.spawners.kube import ProfileKubeSpawner

    if issubclass(spawner_class, ProfileKubeSpawner):
        return KUBE_BACKEND
    raise ConfigError(
        "c.DaskClusters.enabled: dask-gateway runs workers beside dsplatform's spawners "
        "(the local spawner's accounts and cgroups, or dsplatform-kube's pods); not with "
        f"{spawner_class.__name__}"
    )


def check(c: Config, spawner_class: type | None = None) -> None:
    """Start-up checks (ConfigError naming the key)."""
    s = DaskClusters(config=c)
    if s.enabled:
        backend_for(spawner_class)
    check_service_addresses("DaskClusters", s)
    for key in ("port", "scheduler_port", "api_port"):
        value = getattr(s, key)
        if not 0 < value < 65536:
            raise ConfigError(f"c.DaskClusters.{key}: {value} is not a TCP port")
    if len({s.port, s.scheduler_port, s.api_port}) < 3:
        raise ConfigError("c.DaskClusters: port, scheduler_port and api_port must differ")
    if s.max_workers < 1:
        raise ConfigError(f"c.DaskClusters.max_workers: {s.max_workers}; at least 1")
    scheduler_size(s)
    if s.idle_timeout < 0 or s.heartbeat_period < 1:
        raise ConfigError("c.DaskClusters.idle_timeout (>= 0) and heartbeat_period (>= 1)")


def scheduler_size(s: DaskClusters) -> SchedulerSize:
    """What each scheduler holds, or ConfigError naming the key."""
    try:
        memory = parse_bytes(s.scheduler_memory)
    except ValueError as e:
        raise ConfigError(f"c.DaskClusters.scheduler_memory: {e}") from None
    if not s.scheduler_cpu > 0 or memory <= 0:
        raise ConfigError("c.DaskClusters.scheduler_cpu and scheduler_memory must be > 0")
    return SchedulerSize(s.scheduler_cpu, memory)


def sandbox_env(s: DaskClusters) -> dict[str, str]:
    """dask-gateway's client settings, for every sandbox (``Gateway()`` reads them)."""
    return {
        "DASK_GATEWAY__ADDRESS": f"http://{s.host}:{s.port}{PREFIX}",
        "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{s.host}:{s.scheduler_port}",
        "DASK_GATEWAY__PUBLIC_ADDRESS": PREFIX,  # dashboards through the hub's proxy
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def gateway_command(s: DaskClusters, base: Path, backend: str = LOCAL_BACKEND) -> list[str]:
    """``dask-gateway-server`` with dsplatform's backend and the hub's authenticator, set on
    its command line (traitlets' ``--Class.trait=value``)."""
    bind = s.bind_ip or s.host
    settings = {
        "DaskGateway.backend_class": backend,
        "DaskGateway.authenticator_class": "dask_gateway_server.auth.JupyterHubAuthenticator",
        "DaskGateway.address": f"127.0.0.1:{s.api_port}",  # the private API, behind its proxy
        "Proxy.address": f"{bind}:{s.port}",
        "Proxy.tcp_address": f"{bind}:{s.scheduler_port}",
        "Proxy.prefix": PREFIX,
        # users need access:services!service=dask-gateway (every user's role and sandbox token)
        "JupyterHubAuthenticator.jupyterhub_service_name": SERVICE,
        "PlatformBackend.clusters_directory": str(base),
        # where schedulers report (through the gateway's proxy; pods: the hub's Service)
        "PlatformBackend.api_url": f"http://{s.host}:{s.port}{PREFIX}/api",
        "PlatformBackend.cluster_heartbeat_period": str(s.heartbeat_period),
        "PlatformBackend.check_timeouts_period": str(s.heartbeat_period),
        "PlatformBackend.stop_clusters_on_shutdown": "True",  # their workers' grants go back
        "PlatformClusterConfig.cluster_max_workers": str(s.max_workers),
        "PlatformClusterConfig.idle_timeout": str(s.idle_timeout),
    }
    flags = [f"--{key}={value}" for key, value in settings.items()]
    return [sys.executable, "-m", "dask_gateway_server", *flags]


def gateway_service(
    s: DaskClusters, backend: str = LOCAL_BACKEND, namespace: str = ""
) -> dict[str, Any]:
    """The hub service entry (the hub gives it its token and API URL)."""
    base = Path(s.state_dir or state_dir() / "dask")
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)  # cluster directories below are each private to their user
    service: dict[str, Any] = {"name": SERVICE, "url": f"http://{s.host}:{s.port}",
                               "command": gateway_command(s, base, backend)}  # fmt: skip
    if backend == KUBE_BACKEND:  # the hub's own access to the Kubernetes API
        service["environment"] = {k: os.environ[k] for k in KUBE_ENV if k in os.environ}
        if namespace:
            service["command"].append(f"--PlatformKubeBackend.namespace={namespace}")
    return service


def _pod_namespace() -> str:
    """The namespace this pod runs in, as KubeSpawner's default reads it."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


def wire(c: Config, spawner_class: type | None = None) -> None:
    """The gateway service, its role, users' access and the sandboxes' variables."""
    s = DaskClusters(config=c)
    if not s.enabled:
        return
    backend = backend_for(spawner_class)
    from hub_ext.admission.reservations import Ledger
    from hub_ext.dask.grants import restore_into

    if restore_into not in Ledger.loaders:
        Ledger.loaders.append(restore_into)
    services = [x for x in c.JupyterHub.get("services", []) if x.get("name") != SERVICE]
    namespace = ""
    if backend == KUBE_BACKEND:  # KubeSpawner's (its default: the pod's own namespace)
        namespace = str(c.KubeSpawner.get("namespace") or "") or _pod_namespace()
    c.JupyterHub.services = [*services, gateway_service(s, backend, namespace)]
    c.JupyterHub.custom_scopes = {
        **c.JupyterHub.get("custom_scopes", {}),
        WORKERS_SCOPE: {"description": "Admit and release Dask workers (the gateway service)"},
    }
    roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != ROLE]
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", ACCESS]})
    elif ACCESS not in user_role.get("scopes", []):
        user_role["scopes"] = [*user_role.get("scopes", ["self"]), ACCESS]
    roles.append({"name": ROLE, "description": "dask-gateway admits workers through the hub",
                  "scopes": [WORKERS_SCOPE], "services": [SERVICE]})  # fmt: skip
    c.JupyterHub.load_roles = roles
    scopes = list(c.Spawner.get("server_token_scopes", [])) or [
        "users:activity!user",
        "access:servers!server",
    ]
    if ACCESS not in scopes:
        c.Spawner.server_token_scopes = [*scopes, ACCESS]
    c.Spawner.environment = {**sandbox_env(s), **c.Spawner.get("environment", {})}
