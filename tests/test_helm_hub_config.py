"""The hub configuration the Helm chart produces: the rendered ConfigMap and Deployment
environment through the embedded ``jupyterhub_config.py`` (kubernetes mode) and
``hub_ext.setup.configure``, and a sandbox pod built by the real ProfileKubeSpawner from it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
from kubernetes_asyncio.client.api_client import ApiClient
from traitlets.config import Config

from hub_ext.admission.options import resolve_request
from hub_ext.admission.reservations import Ledger
from hub_ext.deploy.chart import apply_chart_values
from hub_ext.setup import configure
from hub_ext.spawners.kube import ProfileKubeSpawner

from .chart import (  # noqa: F401  (fixture)
    DEFAULTS,
    NAMESPACE,
    VALUES,
    container_env,
    find,
    hub_values,
    rendered_fixture,
    selects,
)
from .chart import (
    render as render_chart,
)
from .hub import REPO
from .offline_kubeconfig import kubeconfig  # noqa: F401  (fixture)

K8S = "1.33"

# --- the hub configuration the chart produces -----------------------------------------------

LOAD_CONFIG = """
import json, sys
from traitlets.config.loader import PyFileConfigLoader
c = PyFileConfigLoader("jupyterhub_config.py", path=sys.argv[1]).load_config()
print(json.dumps({
    "spawner_class": c.JupyterHub.spawner_class,
    "authenticator_class": c.JupyterHub.authenticator_class,
    "db_url": c.JupyterHub.db_url,
    "hub_connect_url": c.JupyterHub.hub_connect_url,
    "proxy_api_url": c.ConfigurableHTTPProxy.api_url,
    "should_start": c.ConfigurableHTTPProxy.should_start,
    "services": {s["name"]: s.get("url") for s in c.JupyterHub.services},
    "service_commands": {s["name"]: bool(s.get("command")) for s in c.JupyterHub.services},
    "service_tokens": {s["name"]: s.get("api_token") for s in c.JupyterHub.services},
    "dask_command": next((s["command"] for s in c.JupyterHub.services
                          if s["name"] == "dask-gateway"), None),
    "sandbox_env": {k: v for k, v in c.Spawner.get("environment", {}).items()}
                   if isinstance(c.Spawner.get("environment"), dict) else {},
    "catalog_env": next(s["environment"] for s in c.JupyterHub.services if s["name"] == "catalog"),
    "roles": {r["name"]: r.get("services", []) for r in c.JupyterHub.load_roles},
    "governance": {k: v for k, v in c.ModelGovernance.items()},
    "serving": {k: v for k, v in c.ModelServing.items()},
    "ProfileSpawner": {k: v for k, v in c.ProfileSpawner.items() if isinstance(v, str)},
    "namespace": c.KubeSpawner.namespace,
    "allowed_groups": sorted(c.GenericOAuthenticator.get("allowed_groups", [])),
    "extra_annotations": c.KubeSpawner.get("extra_annotations"),
}))
"""


def load_hub_config(
    objects: list[dict[str, Any]], tmp_path: Path, **overrides: str
) -> subprocess.CompletedProcess[str]:
    """Run the embedded jupyterhub_config.py as the hub pod would: the rendered Deployment's
    environment (secrets resolved from the rendered Secrets), the ConfigMap's files."""
    configmap = find(objects, "ConfigMap", "-hub")
    (container,) = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"]
    # Secrets the chart does not render (the connections'): an admin's, present in the pod
    env = container_env(objects, container, external="(an existing Secret)")
    assert env["DSPLATFORM_MODE"] == "kubernetes"
    for key, text in configmap["data"].items():  # the ConfigMap mounted at /etc/dsplatform
        (tmp_path / key).write_text(text)
        mounted = f"/etc/dsplatform/{key}"
        env = {k: str(tmp_path / key) if v == mounted else v for k, v in env.items()}
    assert env["DSPLATFORM_CHART_VALUES"] == str(tmp_path / "values.yaml")
    env["DSPLATFORM_STATE_DIR"] = str(tmp_path / "state")
    env.update(overrides)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DSPLATFORM_", "OAUTH_", "PG", "JPY_"))
    }
    return subprocess.run(
        [sys.executable, "-c", LOAD_CONFIG, str(REPO)],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_hub_config_from_the_chart_passes_validation(rendered, tmp_path: Path) -> None:
    name, objects = rendered
    # no network here: the lint values' issuer cannot be asked for its endpoints (discovery
    # runs for real in tests/test_hub_oauth.py); the explicit endpoints are used instead
    proc = load_hub_config(
        objects, tmp_path, **({"OAUTH_ISSUER": ""} if name != "defaults" else {})
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads(proc.stdout.strip().splitlines()[-1])
    hub_service = find(objects, "Service", "-hub")
    hub_ports = {p["port"] for p in hub_service["spec"]["ports"]}
    assert config["spawner_class"] == "dsplatform-kube"
    assert config["hub_connect_url"] == f"http://{hub_service['metadata']['name']}:8081"
    assert (
        config["proxy_api_url"]
        == f"http://{find(objects, 'Service', '-proxy-api')['metadata']['name']}:8001"
    )
    assert config["should_start"] is False
    assert config["namespace"] == NAMESPACE
    catalog = urlparse(config["services"]["catalog"])
    assert catalog.hostname == hub_service["metadata"]["name"] and catalog.port in hub_ports
    assert config["ProfileSpawner"]["catalog_url"].startswith(config["services"]["catalog"])
    assert (
        config["ProfileSpawner"]["mlflow_tracking_uri"]
        == hub_values(objects)["services"]["mlflowUrl"]
    )
    # MLflow is the chart's Deployment: a hub service without a command, known by its token
    assert config["services"]["mlflow"] is None and not config["service_commands"]["mlflow"]
    (mlflow_container,) = find(objects, "Deployment", "-mlflow")["spec"]["template"]["spec"][
        "containers"]  # fmt: skip
    mlflow_env = container_env(objects, mlflow_container, external="(an existing Secret)")
    assert config["service_tokens"]["mlflow"] == mlflow_env["JUPYTERHUB_API_TOKEN"]
    assert config["roles"]["dsplatform-mlflow"] == ["mlflow"]
    # models are served by the serving Deployment, with the secret both sides hold
    serving = find(objects, "Service", "-serving")["metadata"]["name"]
    assert config["serving"]["manager_url"] == f"http://{serving}:8000"
    (serving_container,) = find(objects, "Deployment", "-serving")["spec"]["template"]["spec"][
        "containers"]  # fmt: skip
    assert config["catalog_env"]["DSPLATFORM_SERVING_SECRET"] == container_env(
        objects, serving_container)["DSPLATFORM_SERVING_SECRET"]  # fmt: skip
    governance = hub_values(objects)["catalog"]["governance"]
    assert config["governance"]["protected_aliases"] == governance["protectedAliases"]
    assert config["governance"]["approver_groups"] == governance["approverGroups"]
    if name == "defaults":
        pg = find(objects, "Service", "-postgresql")["metadata"]["name"]
        assert config["db_url"] == f"postgresql+psycopg2://dsplatform@{pg}:5432/jupyterhub"
        # the promotion history lives in the hub's database (the pod's state is not kept)
        assert config["governance"]["db_url"] == config["db_url"]
        assert config["authenticator_class"] == "shared-password"
    else:
        assert config["db_url"] == f"sqlite:///{tmp_path / 'state' / 'jupyterhub.sqlite'}"
        assert config["authenticator_class"] == "generic-oauth"
        assert config["allowed_groups"] == ["analysts", "ml-research", "product"]
        assert config["ProfileSpawner"]["dvc_remote"] == "s3://dsplatform-dvc/outputs"
        assert config["extra_annotations"] == {"example.org/team": "data"}  # hub.extraConfig
        # Dask (on in the lint values): the gateway in the hub pod, pods for the clusters
        gateway = urlparse(config["services"]["dask-gateway"])
        assert gateway.hostname == hub_service["metadata"]["name"] and gateway.port in hub_ports
        command = config["dask_command"]
        assert config["sandbox_env"]["DASK_GATEWAY__ADDRESS"] == (
            f"http://{gateway.hostname}:{gateway.port}/services/dask-gateway"
        )
        assert (
            "--DaskGateway.backend_class=hub_ext.dask.kube_backend.PlatformKubeBackend" in command
        )
        assert f"--Proxy.address=0.0.0.0:{gateway.port}" in command
        assert (
            f"--Proxy.tcp_address=0.0.0.0:{hub_values(objects)['dask']['schedulerPort']}" in command
        )
    if name == "defaults":
        assert "dask-gateway" not in config["services"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"platform": {"profiles": [{"slug": "x", "toolchain": "nope"}]}},
            "c.ProfileSpawner.profiles[0] ('x'): key 'toolchain': unknown toolchain 'nope'",
        ),
        (
            {"platform": {"profiles": [{"slug": "x", "cpu": {"default": 1, "min": 4, "max": 2}}]}},
            "c.ProfileSpawner.profiles[0] ('x'): key 'cpu': min 4 > max 2",
        ),
    ],
)
def test_values_the_schema_allows_but_the_hub_refuses_stop_the_hub(
    values: dict, message: str, tmp_path: Path
) -> None:
    proc = load_hub_config(render_chart(values), tmp_path)
    assert proc.returncode == 1
    assert f"dsplatform: invalid configuration: {message}" in proc.stderr


# --- a sandbox pod built by the real spawner from the chart's configuration -----------------


@pytest.mark.usefixtures("kubeconfig")
def test_a_gpu_sandbox_from_the_chart_config(rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyterhub.objects import Hub

    # the hub pod's environment from its Secret (the catalog's credential at the serving pods)
    monkeypatch.setenv("DSPLATFORM_SERVING_SECRET", "s" * 32)
    for variable in ("LAKE_ACCESS_KEY_ID", "LAKE_SECRET_ACCESS_KEY", "DWH_URL"):  # connections'
        monkeypatch.setenv(variable, "(from its Secret)")
    name, objects = rendered
    c = Config()
    env = {"CONFIGPROXY_AUTH_TOKEN": "t", "PGPASSWORD": "p", "DSPLATFORM_STATE_DIR": "/srv/jupyterhub",
           "DSPLATFORM_USER_PASSWORD": "u" * 8, "DSPLATFORM_ADMIN_PASSWORD": "a" * 32}  # fmt: skip
    apply_chart_values(c, hub_values(objects), env)
    policy = configure(c)  # as the hub does after the chart values
    request = resolve_request({"profile": "gpu-a100", "gpus": 2}, policy.profiles, ["ml-research"])
    grant = Ledger().reserve(
        request, user="alice", server="", groups=["ml-research"], tables=policy.quotas, devices={}
    )
    hub = Hub(base_url="/hub/", bind_url="http://:8081", connect_url=c.JupyterHub.hub_connect_url)

    async def build() -> tuple[dict[str, Any], dict[str, Any]]:
        spawner = ProfileKubeSpawner(_mock=True, config=c, hub=hub)
        spawner.apply_grant(grant, request)
        spawner._grant, spawner._request = grant, request
        pod = await spawner.get_pod_manifest()
        pvc = spawner.get_pvc_manifest()
        async with ApiClient() as api:
            return api.sanitize_for_serialization(pod), api.sanitize_for_serialization(pvc)

    pod, pvc = json.loads(json.dumps(asyncio.run(build())))
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    assert kubernetes_validate.validate(pvc, K8S, strict=True) == K8S
    # the chart's NetworkPolicy governs this pod
    sandbox_policy = find(objects, "NetworkPolicy", "-singleuser")["spec"]["podSelector"]
    assert selects(sandbox_policy, pod["metadata"]["labels"])
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    values = VALUES[name] or DEFAULTS
    scheduling = values["platform"]["gpuScheduling"]["nvidia-a100"]
    assert scheduling["node_selector"].items() <= pod["spec"]["nodeSelector"].items()
    assert all(t in pod["spec"]["tolerations"] for t in scheduling["tolerations"])
    assert pod["spec"]["automountServiceAccountToken"] is False
    # the shared RWX volume and the user's own volume
    shared = find(objects, "PersistentVolumeClaim", "-dsdata")["metadata"]["name"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"home": pvc["metadata"]["name"], "dsdata": shared}
    shared_mounts = [m for m in container["volumeMounts"] if m["name"] == "dsdata"]
    # the cache read-only (the catalog in the hub pod writes it), the outputs' remote not
    assert shared_mounts == [
        {"name": "dsdata", "mountPath": "/srv/dsdata/cache", "subPath": "cache", "readOnly": True},
        {"name": "dsdata", "mountPath": "/srv/dsdata/dvc-remote", "subPath": "dvc-remote"},
    ]
    context = container["securityContext"]
    assert context["runAsUser"] == 1000 and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # what the sandbox is told: the chart's Services
    sandbox_env = {e["name"]: e.get("value") for e in container["env"]}
    hub_service = find(objects, "Service", "-hub")["metadata"]["name"]
    assert sandbox_env["MLFLOW_TRACKING_URI"] == hub_values(objects)["services"]["mlflowUrl"]
    assert urlparse(sandbox_env["DSDATA_CATALOG_URL"]).hostname == hub_service
    assert urlparse(sandbox_env["JUPYTERHUB_API_URL"]).hostname == hub_service
    assert sandbox_env["DSDATA_CACHE_DIR"] == "/srv/dsdata/cache"
