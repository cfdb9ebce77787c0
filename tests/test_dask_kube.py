"""Dask clusters in Kubernetes mode, end to end: a real hub with dsplatform-kube and the
gateway's Kubernetes backend against the Kubernetes-API emulator (tests/kube_emulator), which
runs each pod's real dask scheduler and workers on its own loopback address. From a
sandbox pod's kernel, ``Gateway().new_cluster()`` makes a scheduler pod and worker pods
sized by their grants, the cluster computes, a worker over the user's quota is refused with
numbers, another user's kernel cannot talk to the scheduler's pod, and stopping the
cluster deletes its pods and Secret and gives every grant back."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from .conftest import TEST_POLICY
from .hub import ADMIN_TOKEN, HubProcess
from .kube_cluster import GPU_SCHEDULING_CONFIG, kube_hub_env, running_cluster
from .kube_emulator.process import EmulatorProcess
from .test_dask_hub import PROBE, wait_gateway
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

NS = "dsplatform"
K8S = "1.33"
POLICY = (
    TEST_POLICY
    + f"""
c.Spawner.start_timeout = 300
c.KubeSpawner.namespace = {NS!r}
c.KubeSpawner.delete_grace_period = 1
c.DaskClusters.enabled = True
c.DaskClusters.heartbeat_period = 2
c.PlatformKubeBackend.delete_grace_period = 1
c.QuotaPolicy.users = {{"dana": {{"servers": 2, "cpu": 2, "memory": "4G"}}, "erin": {{"cpu": 1}}}}
"""
    + GPU_SCHEDULING_CONFIG
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with running_cluster(tmp_path_factory.mktemp("dask-cluster"), NS) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def khub(
    cluster: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    env = kube_hub_env(cluster)
    hub = HubProcess(tmp_path_factory.mktemp("dask-kube-hub"), POLICY, env=env).start()
    try:
        for user in ("dana", "erin"):
            r = hub.spawn(user, "", {"profile": "cpu-small", "cpu": 0.5, "memory": "1G"})
            assert r.status_code in (201, 202), r.text
        for user in ("dana", "erin"):
            hub.wait_ready(user, timeout=180)
        wait_gateway(hub)
        yield hub
    finally:
        hub.shutdown()


def kernel(hub: HubProcess, cluster: EmulatorProcess, user: str, code: str) -> dict[str, Any]:
    """Run ``code`` in a kernel of the user's sandbox pod (its connection file is in the
    pod's workspace, a directory of the emulator's)."""

    def connection(kernel_id: str) -> Path | None:
        return next(cluster.state.rglob(f"kernel-{kernel_id}.json"), None)

    out = run_in_kernel(hub, user, "", PROBE + code, timeout=300, connection_file=connection)
    return json.loads(out.strip().splitlines()[-1])


def grants(hub: HubProcess, user: str) -> list[dict[str, Any]]:
    r = hub.session.get(f"{hub.api_url}/dsplatform/workers", params={"all": "1"},
                        headers={"Authorization": f"token {ADMIN_TOKEN}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return [w for w in r.json()["workers"] if w["user"] == user]


def dask_pods(cluster: EmulatorProcess, name: str) -> dict[str, dict[str, Any]]:
    pods = cluster.list("pods", NS, labelSelector=f"dsplatform/dask-cluster={name}")
    return {p["metadata"]["labels"]["app.kubernetes.io/component"] + "/" + p["metadata"]["name"]: p
            for p in pods if not p["metadata"].get("deletionTimestamp")}  # fmt: skip


# a direct connection to a scheduler's pod, as an attacker would try it (each try bounded)
CONNECT = """
import asyncio, ssl
from concurrent.futures import ThreadPoolExecutor
from distributed.comm import connect
from distributed.security import Security
async def attempt(address, **kw):
    try:
        comm = await asyncio.wait_for(connect(address, timeout=5, **kw), 15)
        await asyncio.wait_for(comm.write({"op": "identity"}), 5)
        return "connected: " + str(await asyncio.wait_for(comm.read(), 5))[:200]
    except Exception as e:
        return type(e).__name__
def attempts(tries):
    with ThreadPoolExecutor(1) as pool:
        return [pool.submit(asyncio.run, attempt(a, **kw)).result(60) for a, kw in tries]
"""


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_cluster_runs_as_pods_sized_by_their_grants(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    hub = khub
    result = kernel(hub, cluster, "dana", CONNECT + """
gateway = Gateway()
cluster = gateway.new_cluster(worker_cores=0.5, worker_memory="1G", shutdown_on_close=False)
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=180)
total = client.submit(sum, client.map(lambda x: x * x, range(100))).result()
hosts = sorted({w["host"] for w in client.scheduler_info()["workers"].values()})
try:
    cluster.scale(3)
    refused = ""
except Exception as e:
    refused = f"{type(e).__name__}: {e}"
address = client.scheduler_info()["address"]
# the legitimate path: the cluster's own credentials reach its scheduler's pod directly
(direct,) = attempts([(address, cluster.security.get_connection_args("client"))])
print(json.dumps({"total": total, "name": cluster.name, "refused": refused, "hosts": hosts,
                  "scheduler": address, "direct": direct}))
""")  # fmt: skip
    assert result["total"] == sum(x * x for x in range(100))
    assert result["direct"].startswith("connected"), result
    assert "Scaling to 3 workers refused" in result["refused"], result
    assert "running 2 + requested 0.5 = 2.5" in result["refused"], result
    name = result["name"]

    pods = dask_pods(cluster, name)
    schedulers = [p for k, p in pods.items() if k.startswith("dask-scheduler/")]
    workers = [p for k, p in pods.items() if k.startswith("dask-worker/")]
    assert len(schedulers) == 1 and len(workers) == 2, sorted(pods)
    (scheduler,) = schedulers
    # the scheduler listens on its own pod's address; clients reach it through the gateway
    assert scheduler["status"]["podIP"] in result["scheduler"]
    assert all(p["status"]["phase"] == "Running" for p in pods.values())
    secret = cluster.get("secrets", NS, f"dask-{name}")
    assert secret is not None and set(secret["data"]) == {"dask.crt", "dask.pem", "api-token"}
    for pod in pods.values():
        manifest = {"apiVersion": "v1", "kind": "Pod", **pod}  # list items carry neither
        assert kubernetes_validate.validate(manifest, K8S, strict=True) == K8S
        (container,) = pod["spec"]["containers"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "500m", "memory": (
            str(2**30) if pod in workers else str(512 * 2**20))}, resources  # fmt: skip
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        assert container["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["automountServiceAccountToken"] is False
        labels = pod["metadata"]["labels"]
        assert labels["dsplatform/user"] == "dana" and labels["dsplatform/profile"] == "cpu-small"
        # the gateway token only by reference to the cluster's Secret, never in the spec
        env = {e["name"]: e for e in container["env"]}
        assert env["DASK_GATEWAY_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == f"dask-{name}"
        assert json.dumps(pod).count(secret["data"]["api-token"]) == 0
        assert {v["name"]: v for v in pod["spec"]["volumes"]}["dask-credentials"]["secret"][
            "secretName"] == f"dask-{name}"  # fmt: skip

    # each pod's grant is in the hub's ledger: the scheduler's and two workers'
    held = grants(hub, "dana")
    assert len(held) == 3 and {p["metadata"]["labels"]["dsplatform/grant"] for p in pods.values()} == {
        g["id"] for g in held}  # fmt: skip
    assert hub.usage("dana")["usage"]["cpu"] == pytest.approx(2.0)  # sandbox + 3 x 0.5

    # another user's kernel cannot join or query dana's scheduler pod, even with TLS
    attack = kernel(hub, cluster, "erin", CONNECT + f"""
address = {result["scheduler"]!r}
unverified = ssl.create_default_context()
unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
outcomes = attempts([(address, {{"ssl_context": unverified}}),
                     (address, Security.temporary().get_connection_args("client")),
                     (address.replace("tls://", "tcp://"), {{}})])
print(json.dumps({{"outcomes": outcomes, "names": [c.name for c in Gateway().list_clusters()]}}))
""")  # fmt: skip
    assert len(attack["outcomes"]) == 3, attack
    assert all(o.endswith("Error") for o in attack["outcomes"]), attack  # none connected
    assert attack["names"] == []

    # stop: the pods and the Secret go, every grant comes back
    stopped = kernel(hub, cluster, "dana", f"""
Gateway().stop_cluster({name!r})
print(json.dumps({{"ok": True}}))
""")  # fmt: skip
    assert stopped["ok"]
    wait_for(lambda: not dask_pods(cluster, name), timeout=90)
    wait_for(lambda: cluster.get("secrets", NS, f"dask-{name}") is None, timeout=30)
    wait_for(lambda: not grants(hub, "dana"), timeout=30)
    assert hub.usage("dana")["usage"]["cpu"] == pytest.approx(0.5)


def gateway_pid(hub: HubProcess) -> int:
    """The hub's dask-gateway-server process (found by its proxy's port)."""
    flag = f"--Proxy.address=127.0.0.1:{hub.dask_ports[0]}".encode()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and b"dask_gateway_server" in argv and flag in argv:
            return int(proc.name)
    raise AssertionError("no dask-gateway-server process")


def test_a_killed_gateways_pods_are_deleted_and_their_grants_given_back(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    hub = khub
    result = kernel(hub, cluster, "dana", """
cluster = Gateway().new_cluster(worker_cores=0.5, worker_memory="1G", shutdown_on_close=False)
cluster.scale(1)
cluster.get_client().wait_for_workers(1, timeout=180)
print(json.dumps({"name": cluster.name}))
""")  # fmt: skip
    name = result["name"]
    assert len(dask_pods(cluster, name)) == 2 and len(grants(hub, "dana")) == 2
    killed = gateway_pid(hub)
    os.kill(killed, signal.SIGKILL)  # its clusters are forgotten (dask-gateway's memory db)
    # the hub starts the service again; the new gateway deletes what it does not run, and
    # tells the hub which grants are live (none)
    wait_for(lambda: not dask_pods(cluster, name), timeout=180)
    wait_for(lambda: cluster.get("secrets", NS, f"dask-{name}") is None, timeout=30)
    wait_for(lambda: not grants(hub, "dana"), timeout=30)
    assert gateway_pid(hub) != killed
    assert hub.usage("dana")["usage"]["cpu"] == pytest.approx(0.5)
    wait_gateway(hub)  # and it serves again
    again = kernel(hub, cluster, "dana", """
print(json.dumps({"names": [c.name for c in Gateway().list_clusters()]}))
""")  # fmt: skip
    assert again["names"] == []
