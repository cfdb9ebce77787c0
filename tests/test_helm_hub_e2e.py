"""The Helm chart's hub, for real: the rendered configuration run as a JupyterHub process that
spawns a sandbox pod in the Kubernetes-API emulator, reached through configurable-http-proxy.

The chart is rendered (``tests/chart.py``) from its defaults plus ``VALUES``: known secrets
(cookie secret, proxy token, shared passwords, PostgreSQL password), ``alice`` in group
``ml-research`` and that group's GPU quota at 3 (as in ``tests/conftest.py``, so the local
mode's refusals of ``tests/test_hub_spawn.py`` apply word for word). The hub runs the real
``jupyterhub_config.py`` with the rendered hub Deployment's environment (secrets resolved from
the rendered Secrets) and the rendered ConfigMap's files; the proxy runs the rendered proxy
Deployment's command. The emulator gets the release namespace and the rendered shared
``ReadWriteMany`` claim first, as ``helm install`` would create them.

Changed, because it cannot exist outside a cluster (every other value is the chart's):

- ``/etc/dsplatform`` (the ConfigMap mount) and ``/srv/jupyterhub`` (the hub's state
  volume): the ConfigMap's files are written to a temp dir, ``DSPLATFORM_CHART_VALUES``,
  ``DSPLATFORM_EXTRA_CONFIG`` and ``DSPLATFORM_STATE_DIR`` point there.
- in-cluster credentials (the hub ServiceAccount's token): ``KUBECONFIG`` of the emulator.
- the proxy Deployment: ``configurable-http-proxy`` runs here with the rendered command and
  ``CONFIGPROXY_AUTH_TOKEN``; ``--ip``/``--api-ip`` 127.0.0.1 (not all interfaces),
  ``--port``/``--api-port`` free ports (8000/8001 may be taken), the hub's Service
  (``--default-target``/``--error-target``) its local address.
- the rest through ``hub.extraConfig`` (rendered into the ConfigMap's ``extra_config.py``,
  loaded through the Deployment's ``DSPLATFORM_EXTRA_CONFIG``): Service DNS names that do not
  resolve here and fixed ports that may be taken, replaced by 127.0.0.1 and free ports:
  ``c.JupyterHub.bind_url`` (``http://:8000/``: the proxy's public address),
  ``hub_bind_url`` (``http://:8081``), ``hub_connect_url`` (``http://<release>-hub:8081``;
  the pods here reach the hub at 127.0.0.1), ``c.ConfigurableHTTPProxy.api_url``
  (``http://<release>-proxy-api:8001``), ``c.PlatformCatalog.host`` and ``port``
  (``<release>-hub``, 10101; its ``bind_ip`` stays the chart's 0.0.0.0, so the catalog
  listens elsewhere than its hub URL as in the pod), and ``c.JupyterHub.db_url``: the
  chart's URL with only host and port changed to the tests' real PostgreSQL
  (``tests/postgres.py``; the role, database and password of the rendered PostgreSQL
  StatefulSet's environment, the hub's ``PGPASSWORD`` from the same Secret), or, where
  PostgreSQL cannot run here, the chart's other database type (SQLite in the state dir).
- added for the test driver, as in every hub test (``tests/hub.py``, at the top of the same
  ``extraConfig``): a ``test-admin`` service with a known API token, to create users' tokens
  and read the spawner state; its ``c.JupyterHub.hub_port`` and ``c.PlatformMLflow.port``
  lines are inert (``hub_bind_url`` wins; the hub runs no MLflow in kubernetes mode), as is
  the ``DSPLATFORM_PORT`` variable (the chart sets ``bind_url``).
- not changed: the MLflow URL (``http://<release>-mlflow:5000``) is only handed to the
  sandbox and the catalog service, which contact it lazily; no step here does.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_ext.deploy.chart import database_url

from . import processes
from .chart import NAMESPACE, container_env, find, hub_values, render
from .hub import REPO, HubProcess
from .kube_cluster import EMULATOR_RUNS_AS_ROOT
from .kube_emulator.process import EmulatorProcess
from .postgres import PostgresServer, missing_reason, postgres_fixture  # noqa: F401
from .test_helm_chart import merged, selects
from .test_hub_spawn import REFUSALS

pytestmark = pytest.mark.hub

USER_PASSWORD = "chart-user-password"
VALUES: dict[str, Any] = {
    "hub": {"cookieSecret": "5e" * 32},
    "proxy": {"secretToken": "chart-proxy-token-0123456789"},
    "auth": {
        "type": "shared-password",
        "groups": {"ml-research": ["alice"]},
        "sharedPassword": {"userPassword": USER_PASSWORD, "adminPassword": "a" * 40},
    },
    "postgresql": {"password": "chart-postgres-password"},
    "platform": {"quotas": {"groups": {"ml-research": {"gpus": 3}}}},
}
NODES = [{"name": "node-1", "allocatable": {"cpu": "8", "memory": "32Gi"}}]
START_TIMEOUT = 180  # generous: the machine is shared; no timing is asserted


@dataclass
class Release:
    """What the test started from the rendered chart."""

    objects: list[dict[str, Any]]
    values: dict[str, Any]  # the hub ConfigMap's values.yaml
    env: dict[str, str]  # the hub container's environment, as the hub ran with it
    hub: HubProcess
    cluster: EmulatorProcess
    proxy_api: str
    proxy_token: str

    @property
    def namespace(self) -> str:
        return str(self.values["release"]["namespace"])

    def pods_of(self, user: str) -> list[dict[str, Any]]:
        return self.cluster.list("pods", self.namespace, labelSelector=f"dsplatform/user={user}")


@pytest.fixture(scope="module")
def database(request: pytest.FixtureRequest) -> PostgresServer | None:
    """The tests' PostgreSQL (the chart's default hub database), None where it cannot run."""
    if missing_reason() is not None:
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server


def overrides(hub: HubProcess, db_url: str) -> str:
    """``hub.extraConfig``: the local addresses of what the chart names by Service."""
    return (
        "\n# --- tests/test_helm_hub_e2e.py: Service names and fixed ports -> local addresses\n"
        f"c.JupyterHub.bind_url = 'http://127.0.0.1:{hub.port}/'\n"
        f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{hub.hub_port}'\n"
        f"c.JupyterHub.hub_connect_url = 'http://127.0.0.1:{hub.hub_port}'\n"
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{hub.proxy_api_port}'\n"
        "c.PlatformCatalog.host = '127.0.0.1'\n"
        f"c.PlatformCatalog.port = {hub.catalog_port}\n"
        f"c.JupyterHub.db_url = {db_url!r}\n" + EMULATOR_RUNS_AS_ROOT
    )


def proxy_command(
    objects: list[dict[str, Any]], hub_service: str, hub: HubProcess
) -> tuple[list[str], dict[str, str]]:
    """The rendered proxy container's command and environment, with local addresses."""
    (chp,) = find(objects, "Deployment", "-proxy")["spec"]["template"]["spec"]["containers"]
    binary = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    assert chp["command"][0] == "configurable-http-proxy"
    command = [str(binary) if binary.exists() else chp["command"][0]]
    local = {"--ip": "127.0.0.1", "--api-ip": "127.0.0.1",
             "--port": str(hub.port), "--api-port": str(hub.proxy_api_port)}  # fmt: skip
    for arg in chp["command"][1:]:
        key, _, value = arg.partition("=")
        if key in local:
            value = local.pop(key)
        elif key in ("--default-target", "--error-target"):
            assert value.startswith(f"http://{hub_service}:8081"), arg
            value = value.replace(f"http://{hub_service}:8081", f"http://127.0.0.1:{hub.hub_port}")
        command.append(f"{key}={value}")
    assert local == {}, f"the chart's proxy no longer sets {sorted(local)}"
    return command, container_env(objects, chp)


@pytest.fixture(scope="module")
def release(
    tmp_path_factory: pytest.TempPathFactory, database: PostgresServer | None
) -> Iterator[Release]:
    base = tmp_path_factory.mktemp("helm-release")
    hub = HubProcess(base / "hub")
    state = base / "hub-state"  # the hub pod's /srv/jupyterhub
    # the database URL is the chart's with the local host and port; it goes into
    # hub.extraConfig, so it is read from a first render
    chart_db = hub_values(render(VALUES))["database"]
    chart_url = database_url(chart_db, str(state))
    if database is not None:
        db_url = chart_url.replace(
            f"@{chart_db['host']}:{chart_db['port']}/", f"@{database.host}:{database.port}/"
        )
        assert db_url != chart_url
    else:  # PostgreSQL cannot run here: the chart's other database type, sqlite-pvc
        db_url = database_url({"type": "sqlite-pvc"}, str(state))
    hub.extra_config = overrides(hub, db_url)
    extra_config = hub.write_config().read_text()  # tests/hub.py's site config + overrides
    objects = render(merged(VALUES, {"hub": {"extraConfig": extra_config}}))
    values = hub_values(objects)
    hub_service = values["services"]["hub"]

    # the hub pod: the Deployment's environment, the ConfigMap's files, its state volume
    configmap = find(objects, "ConfigMap", "-hub")
    (container,) = find(objects, "Deployment", "-hub")["spec"]["template"]["spec"]["containers"]
    env = container_env(objects, container)
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_dir = base / "etc-dsplatform"
    config_dir.mkdir()
    for key, text in configmap["data"].items():
        (config_dir / key).write_text(text)
    assert (config_dir / "extra_config.py").read_text() == extra_config
    env = {
        k: v.replace(mounted["config"], str(config_dir)).replace(mounted["state"], str(state))
        for k, v in env.items()
    }
    assert env["DSPLATFORM_CHART_VALUES"] == str(config_dir / "values.yaml")
    assert env["DSPLATFORM_EXTRA_CONFIG"] == str(config_dir / "extra_config.py")
    assert env["DSPLATFORM_STATE_DIR"] == str(state)

    if database is not None:  # the role and database the chart's PostgreSQL creates
        statefulset = find(objects, "StatefulSet", "-postgresql")
        (pg,) = statefulset["spec"]["template"]["spec"]["containers"]
        pg_env = container_env(objects, pg)
        assert pg_env["POSTGRES_DB"] == chart_db["name"]
        assert pg_env["POSTGRES_USER"] == chart_db["username"]
        assert pg_env["POSTGRES_PASSWORD"] == env["PGPASSWORD"]  # the same Secret
        database.create_database(
            pg_env["POSTGRES_DB"], pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"]
        )

    with contextlib.ExitStack() as stack:
        namespace = values["release"]["namespace"]
        cluster = EmulatorProcess(base / "cluster", nodes=NODES, namespaces=[namespace])
        cluster.start()
        stack.callback(cluster.stop)
        # what `helm install` creates before any sandbox: the shared dataset claim
        shared = find(objects, "PersistentVolumeClaim", "-dsdata")
        assert shared["metadata"]["name"] == values["sharedStorage"]["claimName"]
        cluster.create("persistentvolumeclaims", namespace, shared)

        command, proxy_env = proxy_command(objects, hub_service, hub)
        assert proxy_env["CONFIGPROXY_AUTH_TOKEN"] == env["CONFIGPROXY_AUTH_TOKEN"]
        proxy = processes.launch(
            command, cwd=base, env={"PATH": os.environ["PATH"], **proxy_env},
            log_path=base / "proxy.log",
        )  # fmt: skip
        stack.callback(processes.stop, proxy, 30)
        api = f"http://127.0.0.1:{hub.proxy_api_port}"
        auth = {"Authorization": f"token {proxy_env['CONFIGPROXY_AUTH_TOKEN']}"}
        processes.wait_ready(
            proxy,
            lambda: processes.answers(f"{api}/api/routes", headers=auth),
            "configurable-http-proxy",
            60,
            lambda: processes.log_tail(base / "proxy.log", 4000),
        )

        hub.env = {**env, "KUBECONFIG": str(cluster.kubeconfig)}
        hub.start(timeout=START_TIMEOUT)
        stack.callback(hub.stop)
        yield Release(objects, values, env, hub, cluster, api, proxy_env["CONFIGPROXY_AUTH_TOKEN"])
        hub.stop_all_servers()


@pytest.fixture
def chart_hub(release: Release) -> Iterator[Release]:
    yield release
    release.hub.stop_all_servers()


def login(hub: HubProcess, user: str, password: str) -> tuple[int, requests.Session]:
    """The login form, as a browser: the answer's status, the session with its cookies."""
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login", timeout=30)
    r = browser.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": password, "_xsrf": browser.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    )
    return r.status_code, browser


def peers_select(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether an ingress rule of the NetworkPolicy admits pods with ``labels``."""
    return any(
        selects(peer["podSelector"], labels)
        for rule in policy["spec"]["ingress"]
        for peer in rule.get("from", [])
        if "podSelector" in peer
    )


def test_a_sandbox_from_the_chart_runs_behind_the_proxy(chart_hub: Release) -> None:
    hub, cluster = chart_hub.hub, chart_hub.cluster
    objects, values = chart_hub.objects, chart_hub.values
    ns = chart_hub.namespace
    # the chart's shared password (from its Secret) logs alice in; a wrong one does not
    assert chart_hub.env["DSPLATFORM_USER_PASSWORD"] == USER_PASSWORD
    assert login(hub, "alice", USER_PASSWORD + "x")[0] == 403
    status, browser = login(hub, "alice", USER_PASSWORD)
    assert status == 302

    r = hub.spawn("alice", "", {"profile": "cpu-small"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", timeout=START_TIMEOUT)

    pod = cluster.get("pods", ns, hub.server_state("alice")["pod_name"])
    assert pod is not None, cluster.list("pods", ns)
    assert pod["metadata"]["namespace"] == ns == NAMESPACE  # the release's namespace
    assert pod["status"]["phase"] == "Running"
    ip = pod["status"]["podIP"]
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", ip) and ip != "127.0.0.1"

    # the chart's NetworkPolicies govern this pod (labels as the emulator stored them)
    labels = pod["metadata"]["labels"]
    assert selects(find(objects, "NetworkPolicy", "-singleuser")["spec"]["podSelector"], labels)
    assert peers_select(find(objects, "NetworkPolicy", "-hub"), labels)  # may call the hub
    assert peers_select(find(objects, "NetworkPolicy", "-mlflow"), labels)  # and MLflow
    assert not peers_select(find(objects, "NetworkPolicy", "-proxy"), labels)  # not its API
    assert labels["dsplatform/profile"] == "cpu-small" and labels["dsplatform/user"] == "alice"

    # the chart's profile, image and sandbox settings
    spec = pod["spec"]
    (notebook,) = spec["containers"]
    assert notebook["image"] == values["platform"]["toolchains"]["scipy"]["image"]
    assert notebook["args"][0] == "jupyterhub-singleuser"  # KubeSpawner's cmd, as z2jh
    assert notebook["resources"]["limits"] == notebook["resources"]["requests"]
    assert set(notebook["resources"]["limits"]) == {"cpu", "memory"}
    assert notebook["securityContext"]["runAsUser"] == values["singleuser"]["uid"]
    assert spec["securityContext"]["fsGroup"] == values["singleuser"]["fsGid"]
    assert spec["automountServiceAccountToken"] is False

    # the user's home claim and the shared dataset claim
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims["dsdata"] == values["sharedStorage"]["claimName"]
    mounts = {m["name"]: m["mountPath"] for m in notebook["volumeMounts"]}
    assert mounts["home"] == values["singleuser"]["storage"]["homeMountPath"] == "/home/jovyan"
    shared = values["sharedStorage"]["mountPath"]
    cache = [m for m in notebook["volumeMounts"] if m.get("subPath") == "cache"]
    assert cache == [{"name": "dsdata", "mountPath": f"{shared}/cache", "subPath": "cache",
                      "readOnly": True}]  # fmt: skip
    home = cluster.get("persistentvolumeclaims", ns, claims["home"])
    assert home is not None
    capacity = values["singleuser"]["storage"]["capacity"]
    assert home["spec"]["resources"]["requests"]["storage"] == capacity == "10Gi"

    # what the sandbox is told
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["MLFLOW_TRACKING_URI"] == values["services"]["mlflowUrl"]  # the chart's Service
    # which a browser cannot open: links go to the catalog's MLflow route behind the hub login
    assert env["DSDATA_MLFLOW_UI_URL"] == "/services/catalog/mlflow/"
    assert env["DSDATA_CACHE_DIR"] == "/srv/dsdata/cache"
    assert env["DSDATA_DVC_REMOTE"] == "/srv/dsdata/dvc-remote"
    assert env["DSPLATFORM_WORKSPACE"] == "/home/jovyan"
    assert env["DSPLATFORM_PROFILE"] == "cpu-small"
    assert env["JUPYTERHUB_API_URL"] == f"http://127.0.0.1:{hub.hub_port}/hub/api"  # overridden
    assert env["DSDATA_CATALOG_URL"].startswith(
        f"http://127.0.0.1:{hub.catalog_port}/services/catalog/"
    )

    # the proxy routes alice to the pod, and her browser gets there (hub OAuth included)
    routes = requests.get(
        f"{chart_hub.proxy_api}/api/routes",
        headers={"Authorization": f"token {chart_hub.proxy_token}"},
        timeout=30,
    ).json()
    assert routes["/user/alice"]["target"] == f"http://{ip}:8888"
    r = browser.get(f"{hub.url}/user/alice/", timeout=60)  # -> hub OAuth -> JupyterLab
    assert r.status_code == 200 and r.url == f"{hub.url}/user/alice/lab", (r.status_code, r.url)
    r = browser.get(f"{hub.url}/user/alice/api/status", timeout=60)
    assert r.status_code == 200 and "started" in r.json(), (r.status_code, r.text[:300])
    # the catalog service the hub runs from the chart's config answers where the sandbox is
    # told, and through the proxy
    token = {"Authorization": f"token {hub.token_for('alice')}"}
    for url in (env["DSDATA_CATALOG_URL"], f"{hub.url}/services/catalog/api/datasets"):
        r = hub.session.get(url, headers=token, timeout=60)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    # a file saved in the notebook lands on the home claim (the emulator's volume directory)
    r = hub.session.put(
        f"{hub.url}/user/alice/api/contents/from-the-chart.txt",
        json={"type": "file", "format": "text", "content": "hello"},
        headers=token,
        timeout=60,
    )
    assert r.status_code == 201, (r.status_code, r.text[:300])
    volume = cluster.state / "cluster" / "volumes" / ns / claims["home"]
    assert (volume / "from-the-chart.txt").read_text() == "hello"

    usage = hub.usage("alice")["usage"]
    assert usage["servers"] == 1 and usage["cpu"] == 1

    # stop deletes the pod and frees the quota; the home claim stays
    hub.stop_server("alice", "", timeout=START_TIMEOUT)
    cluster.wait_gone("pods", ns, pod["metadata"]["name"], timeout=START_TIMEOUT)
    assert hub.usage("alice")["usage"]["servers"] == 0
    assert cluster.get("persistentvolumeclaims", ns, claims["home"]) is not None


# test_hub_spawn's refusals, except the one naming a group only its test policy has
CHART_REFUSALS: list[tuple[Any, ...]] = [r for r in REFUSALS if "storm" not in r[3]]


def test_refusals_are_the_same_as_in_local_mode(chart_hub: Release) -> None:
    assert any("GPU quota exceeded" in r[3] for r in CHART_REFUSALS)
    for user, options, status, message in CHART_REFUSALS:
        r = chart_hub.hub.spawn(user, "", options)
        assert r.status_code == status, (options, r.text)
        assert re.search(message, r.json()["message"]), r.json()
        assert chart_hub.hub.server_model(user, "") is None
        assert chart_hub.hub.usage(user)["usage"]["servers"] == 0
        assert chart_hub.pods_of(user) == []  # refused before any pod exists


def test_the_hub_keeps_its_state_in_the_chart_database(
    release: Release, database: PostgresServer | None
) -> None:
    """The chart's PostgreSQL URL and ``PGPASSWORD`` from its Secret reached the hub."""
    if database is None:
        pytest.skip(f"PostgreSQL cannot run here ({missing_reason()}); the hub used SQLite")
    release.hub.token_for("alice")  # alice exists
    users = database.query(release.values["database"]["name"], "SELECT name FROM users")
    assert ("alice",) in users
    assert not list(Path(release.env["DSPLATFORM_STATE_DIR"]).rglob("*.sqlite"))
