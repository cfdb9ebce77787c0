"""The Helm chart: strict schema, lint, render, official Kubernetes schemas, and the hub
configuration it produces.

No cluster and no ``helm`` binary here: ``helm-python-sdk`` (the Helm v4 SDK through its C
library) lints and renders the chart offline; ``kubernetes-validate`` checks every rendered
object against the official schemas; the hub's ``values.yaml`` from the rendered ConfigMap
goes through the embedded ``jupyterhub_config.py`` (kubernetes mode) and
``hub_ext.setup.configure``; a sandbox pod is built by the real ProfileKubeSpawner from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python.errors import HelmRenderError, HelmValuesError
from kubernetes_asyncio.client.api_client import ApiClient
from traitlets.config import Config

from hub_ext.chart_config import apply_chart_values
from hub_ext.kube_spawner import ProfileKubeSpawner
from hub_ext.options import resolve_request
from hub_ext.reservations import Ledger
from hub_ext.setup import configure

from .chart import CHART, LINT_VALUES, NAMESPACE, container_env, find, hub_values, load_values
from .chart import render as render_chart
from .hub import REPO
from .offline_kubeconfig import kubeconfig  # noqa: F401  (fixture)

K8S = "1.33"
sys.path.insert(0, str(REPO / "helm"))
import generate_schema  # noqa: E402

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
VALUES = {"defaults": {}, "lint-values": load_values(LINT_VALUES)}


@pytest.fixture(scope="module", params=list(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render_chart(VALUES[request.param])


# --- the schema -----------------------------------------------------------------------------


def test_committed_json_schema_is_generated_from_the_yaml() -> None:
    expected = generate_schema.render(generate_schema.load_schema())
    assert (CHART / "values.schema.json").read_text() == expected, (
        "run: python helm/generate_schema.py"
    )


def schema_nodes(node: dict[str, Any], path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for group in ("definitions", "properties"):
        for name, child in node.get(group, {}).items():
            yield from schema_nodes(child, f"{path}.{group}.{name}")
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}.{key}")
    for i, child in enumerate(node.get("oneOf", [])):
        yield from schema_nodes(child, f"{path}.oneOf[{i}]")


def test_schema_is_strict_and_every_key_is_described() -> None:
    problems = []
    for path, node in schema_nodes(SCHEMA):
        if "description" not in node and not path.endswith("]"):
            problems.append(f"{path}: no description")
        if "properties" in node and node.get("additionalProperties") is not False:
            problems.append(f"{path}: properties without additionalProperties: false")
        types = node.get("type", [])
        is_object = "object" in ([types] if isinstance(types, str) else types)
        if (
            is_object
            and "properties" not in node
            and not isinstance(node.get("additionalProperties"), dict)
        ):
            problems.append(f"{path}: a map must say what its values are")
    assert problems == []


def ref_name(node: dict[str, Any]) -> str | None:
    return node["$ref"].rsplit("/", 1)[1] if "$ref" in node else None


def option_paths(node: dict[str, Any], path: str = "") -> set[str]:
    """Every option the schema knows, as dotted paths (maps as ``.*``, lists as ``[]``); the
    keys inside a shared definition count once, as ``#definition.key``."""
    name = ref_name(node)
    if name is not None:
        return {path} | option_paths(SCHEMA["definitions"][name], f"#{name}")
    if "properties" in node:
        return set().union(
            *(
                option_paths(child, f"{path}.{k}".lstrip("."))
                for k, child in node["properties"].items()
            )
        )
    if isinstance(node.get("additionalProperties"), dict):
        return option_paths(node["additionalProperties"], f"{path}.*")
    if node.get("type") == "array" and "items" in node:
        return option_paths(node["items"], f"{path}[]")
    return {path}


def set_paths(node: dict[str, Any], value: Any, path: str = "") -> set[str]:
    """The options a values document sets (same path syntax)."""
    name = ref_name(node)
    if name is not None:
        return {path} | set_paths(SCHEMA["definitions"][name], value, f"#{name}")
    if "properties" in node and isinstance(value, dict):
        return set().union(
            set(),
            *(
                set_paths(node["properties"][k], v, f"{path}.{k}".lstrip("."))
                for k, v in value.items()
                if k in node["properties"]
            ),
        )
    if isinstance(node.get("additionalProperties"), dict) and isinstance(value, dict):
        return set().union(
            set(),
            *(set_paths(node["additionalProperties"], v, f"{path}.*") for v in value.values()),
        )
    if node.get("type") == "array" and "items" in node and isinstance(value, list):
        return set().union(set(), *(set_paths(node["items"], v, f"{path}[]") for v in value))
    return {path}


def test_the_lint_values_file_sets_every_option() -> None:
    missing = option_paths(SCHEMA) - set_paths(SCHEMA, VALUES["lint-values"])
    assert sorted(missing) == []
    assert set_paths(SCHEMA, VALUES["lint-values"]) <= option_paths(SCHEMA)


@pytest.mark.parametrize("name", ["values.yaml", "ci/lint-values.yaml"])
def test_values_files_are_valid_against_the_schema(name: str) -> None:
    document = yaml.safe_load((CHART / name).read_text())
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(document)


INVALID = [
    ({"hub": {"db": {"type": "mysql"}}}, "/hub/db/type"),
    ({"hub": {"cookieSecret": "not-hex"}}, "/hub/cookieSecret"),
    ({"auth": {"oauth": {"clientSecrt": "x"}}}, "clientSecrt"),
    ({"platform": {"profiles": [{"slug": "gpu", "gpus": 2}]}}, "gpus"),
    ({"platform": {"profiles": [{"slug": "Bad Slug"}]}}, "/platform/profiles/0/slug"),
    ({"platform": {"quotas": {"groups": {"ml": {"gpu": 2}}}}}, "gpu"),
    ({"postgresql": {"port": "5432x"}}, "/postgresql/port"),
    ({"sharedStorage": {"mountPath": "relative/path"}}, "/sharedStorage/mountPath"),
    ({"singluser": {"uid": 1000}}, "singluser"),
]


def merged(base: Any, override: Any) -> Any:
    """Helm's coalescing of values: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: merged(base.get(k), v) if k in base else v for k, v in override.items()} | {
            k: v for k, v in base.items() if k not in override
        }
    return override


@pytest.mark.parametrize(("values", "key"), INVALID)
def test_invalid_values_are_refused_naming_the_key(values: dict, key: str) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged(DEFAULTS, values)))
    where = ["/" + "/".join(str(p) for p in e.absolute_path) for e in errors]
    assert len(errors) == 1 and (key == where[0] or key in errors[0].message), (where, errors)
    with pytest.raises(HelmValuesError) as raised:
        render_chart(values)  # what `helm install` / `helm template` do
    assert key.rsplit("/", 1)[-1] in str(raised.value)
    lint = helm.lint(CHART, values, strict=True, kube_version=f"v{K8S}.0")
    assert any(key.rsplit("/", 1)[-1] in m["error"] for m in lint["messages"])


OAUTH = {
    "type": "oauth",
    "oauth": {
        "clientId": "hub",
        "clientSecret": "s",
        "callbackUrl": "https://hub.example.org/hub/oauth_callback",
        "issuer": "https://login.example.org",
        "allowedGroups": ["ml-research"],
    },
}


def oauth_without(key: str) -> dict[str, Any]:
    return {
        "auth": {**OAUTH, "oauth": {**OAUTH["oauth"], key: [] if key == "allowedGroups" else ""}}
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (oauth_without("clientId"), "auth.oauth.clientId is required"),
        (oauth_without("clientSecret"), "auth.oauth.clientSecret (or auth.oauth.existingSecret)"),
        (oauth_without("issuer"), "auth.oauth.issuer (or all of auth.oauth.authorizeUrl"),
        (oauth_without("allowedGroups"), "auth.oauth.allowedGroups (or auth.oauth.allowAll"),
        ({"postgresql": {"deploy": False}}, "postgresql.host is required"),
        (
            {"postgresql": {"deploy": False, "host": "db"}},
            "postgresql.password (or postgresql.existingSecret)",
        ),
        ({"mlflow": {"enabled": False}}, "mlflow.externalUrl is required"),
        ({"mlflow": {"artifacts": {"type": "s3"}}}, "mlflow.artifacts.s3.bucket is required"),
    ],
)
def test_incomplete_values_stop_the_render_with_the_key(values: dict, message: str) -> None:
    with pytest.raises(HelmRenderError) as raised:
        render_chart(values)
    assert message in str(raised.value)


# --- lint and render ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUES))
def test_helm_lint_strict(name: str) -> None:
    report = helm.lint(CHART, VALUES[name], strict=True, kube_version=f"v{K8S}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_rendered_object_is_valid_kubernetes(rendered) -> None:
    _, objects = rendered
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S, obj["metadata"]


def test_the_chart_renders_the_platform(rendered) -> None:
    name, objects = rendered
    kinds = sorted(f"{o['kind']}/{o['metadata']['name'].split('-', 2)[-1]}" for o in objects)
    expected = {
        "ConfigMap/hub", "Deployment/hub", "Secret/hub", "Service/hub", "ServiceAccount/hub",
        "Role/hub", "RoleBinding/hub", "Deployment/proxy", "Service/proxy-api",
        "Service/proxy-public", "Deployment/mlflow", "Service/mlflow",
        "PersistentVolumeClaim/dsdata", "DaemonSet/image-puller", "NetworkPolicy/singleuser",
        "NetworkPolicy/hub", "NetworkPolicy/proxy", "NetworkPolicy/mlflow",
    }  # fmt: skip
    if name == "defaults":  # PostgreSQL in the release, hub db in it, artifacts on a volume
        expected |= {
            "StatefulSet/postgresql", "Service/postgresql", "Secret/postgresql",
            "ConfigMap/postgresql-init", "NetworkPolicy/postgresql",
            "PersistentVolumeClaim/mlflow-artifacts",
        }  # fmt: skip
    else:  # SQLite on a volume, external PostgreSQL, S3 artifacts, an ingress
        expected |= {"PersistentVolumeClaim/hub-db", "Ingress/dsplatform"}
    assert sorted(expected) == kinds
    assert all(o["metadata"].get("namespace") in (None, NAMESPACE) for o in objects)


def test_rbac_is_least_privilege_in_the_release_namespace(rendered) -> None:
    _, objects = rendered
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(objects, "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
            "verbs": ["get", "watch", "list", "create", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
    ]
    binding = find(objects, "RoleBinding")
    hub_sa = find(objects, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": hub_sa, "namespace": NAMESPACE}
    ]
    hub = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]
    assert hub["serviceAccountName"] == hub_sa
    for other in ("-proxy", "-mlflow"):  # no other pod gets an API token
        assert (
            find(objects, "Deployment", other)["spec"]["template"]["spec"][
                "automountServiceAccountToken"
            ]
            is False
        )


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = find(objects, kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


METADATA = ipaddress.ip_address("169.254.169.254")


def test_network_policies(rendered) -> None:
    name, objects = rendered
    hub, proxy = (
        pod_labels(objects, "Deployment", "-hub"),
        pod_labels(objects, "Deployment", "-proxy"),
    )
    mlflow = pod_labels(objects, "Deployment", "-mlflow")
    sandbox = find(objects, "NetworkPolicy", "-singleuser")["spec"]
    # sandboxes accept traffic from the hub and the proxy only, on the notebook port
    ((ingress,),) = [sandbox["ingress"]]
    assert [
        selects(p["podSelector"], hub) or selects(p["podSelector"], proxy) for p in ingress["from"]
    ] == [True, True]
    assert ingress["ports"] == [{"port": 8888, "protocol": "TCP"}]
    sandbox_labels = {k: v for k, v in sandbox["podSelector"]["matchLabels"].items()}
    for rule in sandbox["egress"]:
        for peer in rule.get("to", []):
            # never each other ...
            assert not ("podSelector" in peer and selects(peer["podSelector"], sandbox_labels))
            # ... and never the cloud metadata API
            if "ipBlock" in peer:
                block = peer["ipBlock"]
                if METADATA in ipaddress.ip_network(block["cidr"]):
                    assert any(METADATA in ipaddress.ip_network(e) for e in block.get("except", []))
            if "namespaceSelector" in peer:  # only DNS may go to any pod
                assert {p["port"] for p in rule["ports"]} == {53}
    reach = {
        (str(labels_name), port["port"])
        for rule in sandbox["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer
        for labels_name, labels in (("hub", hub), ("proxy", proxy), ("mlflow", mlflow))
        if selects(peer["podSelector"], labels)
        for port in rule["ports"]
    }
    catalog_port = hub_values(objects)["catalog"]["port"]
    assert reach == {("hub", 8081), ("hub", catalog_port), ("proxy", 8000), ("mlflow", 5000)}
    dns = [r for r in sandbox["egress"] if {p["port"] for p in r.get("ports", [])} == {53}]
    assert len(dns) == 1 and {p["protocol"] for p in dns[0]["ports"]} == {"UDP", "TCP"}
    internet = [
        r
        for r in sandbox["egress"]
        if any(p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for p in r.get("to", []))
    ]
    assert len(internet) == (1 if name == "defaults" else 0)  # lint values turn it off

    def allowed_from(policy_name: str) -> dict[int, list[dict[str, Any]]]:
        spec = find(objects, "NetworkPolicy", policy_name)["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        return {p["port"]: rule.get("from", []) for rule in spec["ingress"] for p in rule["ports"]}

    hub_in = allowed_from("-hub")
    assert set(hub_in) == {8081, catalog_port}
    for peers in hub_in.values():
        assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers] == [
            "proxy",
            "singleuser-server",
            "hub",  # the catalog and culler services in the hub pod, through the Service
        ]
    proxy_in = allowed_from("-proxy")
    assert proxy_in[8000] == []  # the public port: from anywhere
    assert [selects(p["podSelector"], hub) for p in proxy_in[8001]] == [True]  # the API: hub only
    mlflow_in = allowed_from("-mlflow")
    assert [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in mlflow_in[5000]
    ] == ["singleuser-server", "hub"]
    if name == "defaults":
        pg_in = allowed_from("-postgresql")
        assert [
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in pg_in[5432]
        ] == ["hub", "mlflow"]


def test_the_pre_puller_pulls_every_toolchain_image(rendered) -> None:
    name, objects = rendered
    values = VALUES[name] or DEFAULTS
    spec = find(objects, "DaemonSet")["spec"]["template"]["spec"]
    pulled = {c["image"] for c in spec["initContainers"]}
    toolchains = {t["image"] for t in values["platform"]["toolchains"].values()}
    assert pulled == toolchains | set(values.get("prePuller", {}).get("extraImages", []))
    assert {t["key"] for t in spec["tolerations"] if "key" in t} <= {"nvidia.com/gpu"}


def test_secrets_stay_in_secrets(rendered) -> None:
    _, objects = rendered
    secrets = [v for o in objects if o["kind"] == "Secret" for v in o["stringData"].values()]
    assert secrets
    visible = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for secret in secrets:
        assert secret not in visible
    hub = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in hub["env"]}
    for variable in ("JPY_COOKIE_SECRET", "CONFIGPROXY_AUTH_TOKEN"):
        assert "secretKeyRef" in env[variable]["valueFrom"]
    cookie = container_env(objects, hub)["JPY_COOKIE_SECRET"]
    assert len(bytes.fromhex(cookie)) == 32  # what JupyterHub reads from JPY_COOKIE_SECRET


def test_mlflow_serves_artifacts_from_postgresql_and_a_volume_or_bucket(rendered) -> None:
    name, objects = rendered
    (container,) = find(objects, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert "--serve-artifacts" in args
    assert args[args.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2://")
    destination = args[args.index("--artifacts-destination") + 1]
    assert destination == (
        "/srv/mlflow/artifacts" if name == "defaults" else "s3://dsplatform-mlflow/artifacts"
    )
    service = find(objects, "Service", "-mlflow")["metadata"]["name"]
    assert f"{service}:5000" in args[args.index("--allowed-hosts") + 1].split(",")
    assert hub_values(objects)["services"]["mlflowUrl"] == f"http://{service}:5000"


def test_the_shared_dataset_volume_is_read_write_many(rendered) -> None:
    _, objects = rendered
    pvc = find(objects, "PersistentVolumeClaim", "-dsdata")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert hub_values(objects)["sharedStorage"]["claimName"] == pvc["metadata"]["name"]


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
    env = container_env(objects, container)
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
    assert "mlflow" not in config["services"]  # MLflow is the chart's Deployment
    if name == "defaults":
        pg = find(objects, "Service", "-postgresql")["metadata"]["name"]
        assert config["db_url"] == f"postgresql+psycopg2://dsplatform@{pg}:5432/jupyterhub"
        assert config["authenticator_class"] == "shared-password"
    else:
        assert config["db_url"] == f"sqlite:///{tmp_path / 'state' / 'jupyterhub.sqlite'}"
        assert config["authenticator_class"] == "generic-oauth"
        assert config["allowed_groups"] == ["analysts", "ml-research", "product"]
        assert config["ProfileSpawner"]["dvc_remote"] == "s3://dsplatform-dvc/outputs"
        assert config["extra_annotations"] == {"example.org/team": "data"}  # hub.extraConfig


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
def test_a_gpu_sandbox_from_the_chart_config(rendered) -> None:
    from jupyterhub.objects import Hub

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
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["dsdata"] == "/srv/dsdata"
    # what the sandbox is told: the chart's Services
    sandbox_env = {e["name"]: e.get("value") for e in container["env"]}
    hub_service = find(objects, "Service", "-hub")["metadata"]["name"]
    assert sandbox_env["MLFLOW_TRACKING_URI"] == hub_values(objects)["services"]["mlflowUrl"]
    assert urlparse(sandbox_env["DSDATA_CATALOG_URL"]).hostname == hub_service
    assert urlparse(sandbox_env["JUPYTERHUB_API_URL"]).hostname == hub_service
    assert sandbox_env["DSDATA_CACHE_DIR"] == "/srv/dsdata/cache"
