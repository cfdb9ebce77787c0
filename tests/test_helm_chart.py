"""The Helm chart: strict schema, lint, render, official Kubernetes schemas, and the hub
configuration it produces.

No cluster and no ``helm`` binary here: ``helm-python-sdk`` (the Helm v4 SDK through its C
library) lints and renders the chart offline; ``kubernetes-validate`` checks every rendered
object against the official schemas; the hub's ``values.yaml`` from the rendered ConfigMap
goes through the embedded ``jupyterhub_config.py`` (kubernetes mode) and
``hub_ext.setup.configure``; a sandbox pod is built by the real ProfileKubeSpawner from it.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python.errors import HelmRenderError, HelmValuesError

from .chart import (  # noqa: F401  (fixture)
    CHART,
    DEFAULTS,
    LINT_VALUES,
    NAMESPACE,
    VALUES,
    container_env,
    find,
    hub_values,
    load_values,
    rendered_fixture,
    selects,
)
from .chart import render as render_chart
from .hub import REPO
from .offline_kubeconfig import kubeconfig  # noqa: F401  (fixture)

K8S = "1.33"
sys.path.insert(0, str(REPO / "helm"))
import generate_schema  # noqa: E402

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())


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
        "ConfigMap/mlflow-auth", "Deployment/serving", "Service/serving", "NetworkPolicy/serving",
    }  # fmt: skip
    if name == "defaults":  # PostgreSQL in the release, hub db in it, artifacts on a volume
        expected |= {
            "StatefulSet/postgresql", "Service/postgresql", "Secret/postgresql",
            "ConfigMap/postgresql-init", "NetworkPolicy/postgresql",
            "PersistentVolumeClaim/mlflow-artifacts",
        }  # fmt: skip
    else:  # SQLite on a volume, external PostgreSQL, S3 artifacts, an ingress
        expected |= {"PersistentVolumeClaim/hub-db", "Ingress/dsplatform", "NetworkPolicy/dask"}
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
    for other in ("-proxy", "-mlflow", "-serving"):  # no other pod gets an API token
        assert (
            find(objects, "Deployment", other)["spec"]["template"]["spec"][
                "automountServiceAccountToken"
            ]
            is False
        )


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
    dask = hub_values(objects)["dask"]
    dask_ports = {dask["port"], dask["schedulerPort"]} if dask["enabled"] else set()
    assert reach == {("hub", 8081), ("hub", catalog_port), ("proxy", 8000), ("mlflow", 5000)} | {
        ("hub", port) for port in dask_ports}  # fmt: skip
    dns = [r for r in sandbox["egress"] if {p["port"] for p in r.get("ports", [])} == {53}]
    assert len(dns) == 1 and {p["protocol"] for p in dns[0]["ports"]} == {"UDP", "TCP"}
    internet = [
        r
        for r in sandbox["egress"]
        if any(p.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for p in r.get("to", []))
    ]
    assert len(internet) == (1 if name == "defaults" else 0)  # lint values turn it off

    def allowed_from(
        policy_name: str, types: list[str] | None = None
    ) -> dict[int, list[dict[str, Any]]]:
        spec = find(objects, "NetworkPolicy", policy_name)["spec"]
        assert spec["policyTypes"] == (types or ["Ingress"])
        allowed: dict[int, list[dict[str, Any]]] = {}
        for rule in spec["ingress"]:
            for p in rule["ports"]:
                allowed.setdefault(p["port"], []).extend(rule.get("from", []))
        return allowed

    def components(peers: list[dict[str, Any]]) -> list[str]:
        return [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers]

    hub_in = allowed_from("-hub")
    assert set(hub_in) == {8081, catalog_port} | dask_ports
    if dask["enabled"]:  # the gateway: the proxy routes to it, sandboxes and Dask pods call it
        dask_pod = {"app.kubernetes.io/name": hub["app.kubernetes.io/name"],
                    "app.kubernetes.io/instance": hub["app.kubernetes.io/instance"],
                    "app.kubernetes.io/component": "dask-worker"}  # fmt: skip
        assert [selects(p["podSelector"], dask_pod) for p in hub_in[dask["port"]]] == [
            False, False, False, True]  # fmt: skip
        assert components(hub_in[dask["port"]][:3]) == ["proxy", "singleuser-server", "hub"]
        assert components(hub_in[dask["schedulerPort"]]) == ["proxy", "singleuser-server", "hub"]
        policy = find(objects, "NetworkPolicy", "-dask")["spec"]
        assert selects(policy["podSelector"], dask_pod)
        assert selects(
            policy["podSelector"], {**dask_pod, "app.kubernetes.io/component": "dask-scheduler"}
        )
        assert not selects(
            policy["podSelector"], {**dask_pod, "app.kubernetes.io/component": "singleuser-server"}
        )
        (ingress,) = policy["ingress"]  # the gateway and each other, nobody else
        assert [selects(p["podSelector"], hub) for p in ingress["from"]] == [True, False]
        assert [selects(p["podSelector"], dask_pod) for p in ingress["from"]] == [False, True]
        assert not any(selects(p["podSelector"], sandbox_labels) for p in ingress["from"])
        gateway, peers = policy["egress"][:2]
        assert selects(gateway["to"][0]["podSelector"], hub)
        assert gateway["ports"] == [{"port": dask["port"], "protocol": "TCP"}]
        assert selects(peers["to"][0]["podSelector"], dask_pod) and "ports" not in peers
    else:
        assert not [o for o in objects if o["metadata"]["name"].endswith("-dask")]
    # the catalog and culler services in the hub pod reach the hub through its Service
    assert components(hub_in[catalog_port]) == ["proxy", "singleuser-server", "hub"]
    # MLflow checks hub tokens at the hub API
    assert components(hub_in[8081]) == ["proxy", "singleuser-server", "hub", "mlflow"]
    # the serving pods: the catalog (hub pod) only, on the manager's port; they reach nothing
    serving_in = allowed_from("-serving", ["Ingress", "Egress"])
    assert {port: components(peers) for port, peers in serving_in.items()} == {8000: ["hub"]}
    assert find(objects, "NetworkPolicy", "-serving")["spec"]["egress"] == []
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
    cookie = container_env(objects, hub, external="")["JPY_COOKIE_SECRET"]
    assert len(bytes.fromhex(cookie)) == 32  # what JupyterHub reads from JPY_COOKIE_SECRET


def test_connection_credentials_come_from_their_secrets(rendered) -> None:
    name, objects = rendered
    hub = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in hub["env"]}
    if name == "defaults":
        assert "DWH_URL" not in env
        return
    assert env["LAKE_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "lake-s3", "key": "secret-key"}
    }
    assert env["DWH_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "warehouse", "key": "sqlalchemy-url"}
    }
    values = hub_values(objects)  # the connections reach the hub, their secrets do not
    assert values["platform"]["connections"]["lake"]["credentials"] == {"env": "LAKE"}


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


def test_mlflow_runs_the_auth_app_behind_hub_identity(rendered) -> None:
    _, objects = rendered
    spec = find(objects, "Deployment", "-mlflow")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    assert args[args.index("--app-name") + 1] == "dsplatform"
    env = container_env(objects, container, external="(an existing Secret)")
    hub_env = container_env(objects, find(objects, "Deployment", "-hub")["spec"]["template"][
        "spec"]["containers"][0], external="(an existing Secret)")  # fmt: skip
    hub_service = find(objects, "Service", "-hub")["metadata"]["name"]
    base = str(hub_values(objects)["hub"]["baseUrl"]).rstrip("/")
    assert env["JUPYTERHUB_API_URL"] == f"http://{hub_service}:8081{base}/hub/api"
    # the hub knows MLflow by the token MLflow holds (the hub registers it as a service)
    assert env["JUPYTERHUB_API_TOKEN"] == hub_env["DSPLATFORM_MLFLOW_SERVICE_TOKEN"]
    assert len(env["JUPYTERHUB_API_TOKEN"]) >= 32
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    rules = json.loads(env["DSPLATFORM_MLFLOW_AUTH"])
    governance = hub_values(objects)["catalog"]["governance"]
    assert rules == {"trusted_services": ["catalog"],
                     "protected_aliases": governance["protectedAliases"],
                     "sharing_groups": hub_values(objects)["mlflow"]["sharingGroups"]}  # fmt: skip
    ini = find(objects, "ConfigMap", "-mlflow-auth")["data"]["basic_auth.ini"]
    settings = dict(line.split(" = ", 1) for line in ini.splitlines() if " = " in line)
    assert settings["database_uri"] == args[args.index("--backend-store-uri") + 1]
    assert settings["authorization_function"] == (
        "hub_ext.services.mlflow.auth:authenticate_request"
    )
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/dsplatform-mlflow/basic_auth.ini"
    assert {"name": "auth", "mountPath": "/etc/dsplatform-mlflow", "readOnly": True} in (
        container["volumeMounts"]
    )


def test_models_are_served_outside_the_hub_pod(rendered) -> None:
    _, objects = rendered
    deployment = find(objects, "Deployment", "-serving")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "hub_ext.services.serving.manager"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # its volumes are its own scratch space: nothing of the hub's, no shared volume
    assert [sorted(v) for v in spec["volumes"]] == [["emptyDir", "name"], ["emptyDir", "name"]]
    env = container_env(objects, container)
    hub_container = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"][0]
    hub_env = container_env(objects, hub_container, external="(an existing Secret)")
    assert set(env) == {"DSPLATFORM_SERVING_SECRET", "MLFLOW_DISABLE_TELEMETRY"}
    assert env["DSPLATFORM_SERVING_SECRET"] == hub_env["DSPLATFORM_SERVING_SECRET"]
    assert len(env["DSPLATFORM_SERVING_SECRET"]) >= 16
    service = find(objects, "Service", "-serving")
    assert service["spec"]["ports"][0]["port"] == 8000
    assert hub_values(objects)["services"]["serving"] == service["metadata"]["name"]


def test_the_shared_dataset_volume_is_read_write_many(rendered) -> None:
    _, objects = rendered
    pvc = find(objects, "PersistentVolumeClaim", "-dsdata")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert hub_values(objects)["sharedStorage"]["claimName"] == pvc["metadata"]["name"]
    # the hub pod's catalog service is the cache's one writer
    hub = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]
    (container,) = hub["containers"]
    writer = [m for m in container["volumeMounts"] if m["name"] == "dsdata"]
    assert writer == [{"name": "dsdata", "mountPath": "/srv/dsdata/cache", "subPath": "cache"}]
    assert {"name": "dsdata", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} in (
        hub["volumes"]
    )


def test_every_workload_is_hardened(rendered) -> None:
    """What checkov's CKV_K8S_28/31/37 (and the Pod Security Standards' restricted profile)
    ask of every pod the chart creates: no capabilities, no privilege escalation, a
    RuntimeDefault seccomp profile, not root."""
    _, objects = rendered
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        spec = obj["spec"]["template"]["spec"]
        pod_context = spec.get("securityContext") or {}
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container.get("securityContext") or {}
            name = f"{where} container {container['name']}"
            assert context.get("allowPrivilegeEscalation") is False, name
            assert "ALL" in (context.get("capabilities") or {}).get("drop", []), name
            assert (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")) is True, name
