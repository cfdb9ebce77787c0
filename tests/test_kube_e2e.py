"""Kubernetes mode end to end: a real hub and proxy, real KubeSpawner, the Kubernetes-API
emulator (tests/kube_emulator) running each pod's real jupyterhub-singleuser on its own
loopback address. The user's story: spawn a GPU profile, reach the server through the
proxy, stop it; refusals as in local mode; unschedulable pods and bad images fail fast;
a hub restart keeps the pods and counts each reservation once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TEST_POLICY
from .hub import HubProcess
from .kube_cluster import (
    GPU_PRODUCT,
    GPU_SCHEDULING_CONFIG,
    TOLERATION,
    kube_hub_env,
    running_cluster,
)
from .kube_emulator.process import EmulatorProcess
from .test_hub_spawn import REFUSALS

pytestmark = pytest.mark.hub

NS = "dsplatform"
BAD_IMAGE = "registry.invalid/dsplatform/missing:1"
START_TIMEOUT = 300  # fail-fast must not rely on it
FAST = 60  # "within seconds": far below START_TIMEOUT (a correctness bound, not a benchmark)

KUBE_POLICY = (
    f"""
c.Spawner.start_timeout = {START_TIMEOUT}
c.JupyterHub.allow_named_servers = True
c.KubeSpawner.namespace = {NS!r}
c.KubeSpawner.delete_grace_period = 1
c.ProfileSpawner.toolchains = {{
    "scipy": {{"image": "quay.io/jupyter/scipy-notebook:2025-10-20", "env": {{"TOOLCHAIN": "scipy"}}}},
    "broken": {{"image": {BAD_IMAGE!r}}},
}}
c.ProfileSpawner.profiles = [*c.ProfileSpawner.profiles, {{
    "slug": "broken-image", "toolchain": "broken", "cpu": 1, "memory": "1G",
    "groups": ["ml-research"]}}]
"""
    + GPU_SCHEDULING_CONFIG
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), NS, gpus=3) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def kube_hub(
    cluster: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    env = kube_hub_env(cluster)
    hub = HubProcess(tmp_path_factory.mktemp("kubehub"), TEST_POLICY + KUBE_POLICY, env=env)
    hub.start()
    try:
        yield hub
    finally:
        hub.shutdown()


@pytest.fixture
def khub(kube_hub: HubProcess) -> Iterator[HubProcess]:
    yield kube_hub
    kube_hub.stop_all_servers()


def pods_of(cluster: EmulatorProcess, user: str) -> list[dict[str, Any]]:
    return cluster.list("pods", NS, labelSelector=f"dsplatform/user={user}")


def pod_of(cluster: EmulatorProcess, hub: HubProcess, user: str, server: str) -> dict[str, Any]:
    pod = cluster.get("pods", NS, hub.server_state(user, server)["pod_name"])
    assert pod is not None
    return pod


def through_proxy(hub: HubProcess, user: str, server: str, path: str) -> Any:
    base = f"{hub.url}/user/{user}/{server}/" if server else f"{hub.url}/user/{user}/"
    r = hub.session.get(base + path, headers={"Authorization": f"token {hub.token_for(user)}"})
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.json()


def progress(hub: HubProcess, user: str, server: str = "") -> list[dict[str, Any]]:
    """The spawn progress events (Server-Sent Events) until ready or failed."""
    path = (
        f"/users/{user}/servers/{server}/progress" if server else f"/users/{user}/server/progress"
    )
    events = []
    with hub.session.get(
        f"{hub.api_url}{path}", headers={"Authorization": f"token {hub.token_for(user)}"},
        stream=True, timeout=START_TIMEOUT,
    ) as r:  # fmt: skip
        assert r.status_code == 200, r.text
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("failed") or events[-1].get("ready"):
                    break
    return events


def spawn_failure(
    hub: HubProcess, user: str, server: str, options: dict[str, Any]
) -> tuple[str, float, list[dict[str, Any]]]:
    """Spawn, expect a failure; its message, how long it took, the progress events."""
    started = time.monotonic()
    r = hub.spawn(user, server, options)
    events = progress(hub, user, server)
    elapsed = time.monotonic() - started
    assert events[-1].get("failed"), events
    if r.status_code != 202:  # failed before the POST's answer window closed
        assert r.json()["message"] in events[-1]["message"], (r.json(), events)
    return events[-1]["message"], elapsed, events


# --- the user's story ---------------------------------------------------------------------------


def test_gpu_profile_runs_as_a_pod_behind_the_proxy(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    hub = khub
    r = hub.spawn("alice", "train", {"profile": "gpu-a100", "gpus": 2, "cpu": 2, "memory": "2G"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "train", timeout=120)
    # the user's request reaches the real jupyterhub-singleuser in the pod, through the proxy
    assert "started" in through_proxy(hub, "alice", "train", "api/status")

    pod = pod_of(cluster, hub, "alice", "train")
    assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"] == "gpu-node"
    assert (
        re.fullmatch(r"127\.\d+\.\d+\.\d+", pod["status"]["podIP"])
        and pod["status"]["podIP"] != "127.0.0.1"
    )
    (notebook,) = pod["spec"]["containers"]
    assert notebook["image"] == "quay.io/jupyter/scipy-notebook:2025-10-20"
    assert notebook["resources"]["limits"] == notebook["resources"]["requests"] == {
        "cpu": 2.0, "memory": 2 * 1024**3, "nvidia.com/gpu": "2"}  # fmt: skip
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": GPU_PRODUCT}
    assert pod["spec"]["tolerations"] == [TOLERATION]
    labels = pod["metadata"]["labels"]
    assert labels["dsplatform/profile"] == "gpu-a100" and labels["dsplatform/user"] == "alice"
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert json.loads(env["DSPLATFORM_RESOURCES"]) == {
        "cpu": 2.0, "memory": "2G", "gpus": 2, "gpu_type": "nvidia-a100", "disk": "10G"}  # fmt: skip
    assert env["DSPLATFORM_PROFILE"] == "gpu-a100" and env["TOOLCHAIN"] == "scipy"
    assert env["DSDATA_CACHE_DIR"] == "/srv/dsdata-cache"
    assert env["DSPLATFORM_WORKSPACE"] == "/home/jovyan"
    # the workspace is the server's PVC of the chosen disk size; the cache the shared claim
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["dsplatform-workspace"]["persistentVolumeClaim"]["claimName"]
    pvc = cluster.get("persistentvolumeclaims", NS, claim)
    assert pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == str(10 * 1024**3)
    assert (
        volumes["dsplatform-dataset-cache"]["persistentVolumeClaim"]["claimName"] == "dsdata-cache"
    )
    assert {m["mountPath"] for m in notebook["volumeMounts"]} >= {
        "/home/jovyan",
        "/srv/dsdata-cache",
    }

    usage = hub.usage("alice")
    assert usage["usage"]["gpus"] == 2 and usage["pools"]["nvidia-a100"]["used"] == 2

    # stop deletes the pod and releases the quota; the workspace claim stays
    hub.stop_server("alice", "train")
    cluster.wait_gone("pods", NS, pod["metadata"]["name"])
    usage = hub.usage("alice")
    assert usage["usage"]["gpus"] == 0 and usage["usage"]["servers"] == 0
    assert usage["pools"]["nvidia-a100"]["used"] == 0
    assert cluster.get("persistentvolumeclaims", NS, claim) is not None


def test_datasets_preload_in_an_init_container(khub: HubProcess, cluster: EmulatorProcess) -> None:
    hub = khub
    assert hub.spawn("erin", "", {"profile": "cpu-small"}).status_code in (201, 202)
    hub.wait_ready("erin", timeout=120)
    pod = pod_of(cluster, hub, "erin", "")
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["name"] == "dsdata-preload"
    assert init["state"]["terminated"]["exitCode"] == 0
    assert pod["spec"]["nodeName"] == "cpu-node" and "nodeSelector" not in pod["spec"]
    # the notebook sees what the init container pulled (a shared emptyDir workspace)
    listing = through_proxy(hub, "erin", "", "api/contents/data/iris")
    assert "iris.csv" in {f["name"] for f in listing["content"]}
    # through the shared cache volume (DVC's layout), not a per-pod one
    cache = cluster.state / "cluster" / "volumes" / NS / "dsdata-cache"
    assert any(cache.rglob("*")), "the shared cache claim stayed empty"


def test_a_leftover_pod_of_the_same_name_keeps_the_reservation(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    """KubeSpawner deletes a stale pod that holds the name (409) and stops "itself" to do
    so, in the middle of the start: that must not give the new server's quota back."""
    leftover = {"metadata": {"name": "jupyter-erin"}, "spec": {"containers": [{
        "name": "notebook", "image": "python:3.11", "command": ["python", "-c", "import time; time.sleep(600)"]}]}}  # fmt: skip
    old_uid = cluster.create("pods", NS, leftover)["metadata"]["uid"]
    assert khub.spawn("erin", "", {"profile": "cpu-small", "cpu": 1}).status_code in (201, 202)
    khub.wait_ready("erin", timeout=120)
    assert pod_of(cluster, khub, "erin", "")["metadata"]["uid"] != old_uid
    usage = khub.usage("erin")["usage"]
    assert usage["servers"] == 1 and usage["cpu"] == 1
    r = khub.spawn("erin", "second", {"profile": "cpu-small"})  # erin's limit: 1 server
    assert r.status_code == 403 and "1 server" in r.json()["message"], r.text


@pytest.mark.parametrize(("user", "options", "status", "message"), REFUSALS)
def test_refusals_are_the_same_as_in_local_mode(
    khub: HubProcess, cluster: EmulatorProcess, user: str, options: dict, status: int, message: str
) -> None:
    r = khub.spawn(user, "", options)
    assert r.status_code == status, r.text
    assert re.search(message, r.json()["message"]), r.json()
    assert khub.server_model(user, "") is None
    assert khub.usage(user)["usage"]["servers"] == 0
    assert pods_of(cluster, user) == []  # refused before any pod exists


def test_unschedulable_pod_fails_fast_and_releases(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    hub = khub
    # another team's job holds 2 of the node's 3 GPUs: the platform quota cannot know
    job = cluster.create("pods", NS, {
        "metadata": {"name": "other-team-job"},
        "spec": {"nodeSelector": {"nvidia.com/gpu.product": GPU_PRODUCT}, "tolerations": [TOLERATION],
                 "containers": [{"name": "train", "image": "python:3.11",
                                 "command": ["python", "-c", "import time; time.sleep(600)"],
                                 "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
    })  # fmt: skip
    try:
        message, elapsed, events = spawn_failure(
            hub, "carol", "", {"profile": "gpu-a100", "gpus": 2}
        )
        assert "FailedScheduling" in message and "Insufficient nvidia.com/gpu" in message, message
        assert "0/2 nodes are available" in message
        # the scheduler's own event reached the progress stream while the spawn was pending
        # (or, when the failure beat the first progress poll, the final event carries it)
        assert all(
            "Insufficient nvidia.com/gpu" in e["message"] for e in events if "raw_event" in e
        )
        assert elapsed < FAST, f"failed after {elapsed:.0f}s; start_timeout is {START_TIMEOUT}s"
        assert hub.server_model("carol", "") is None
        usage = hub.usage("carol")
        assert usage["usage"]["gpus"] == 0 and usage["pools"]["nvidia-a100"]["used"] == 0
        deadline = time.monotonic() + 30
        while pods_of(cluster, "carol") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pods_of(cluster, "carol") == []  # the pending pod was deleted
        scheduling = [e for e in cluster.list("events", NS) if e["reason"] == "FailedScheduling"
                      and e["involvedObject"]["name"].startswith("jupyter-carol")]  # fmt: skip
        assert scheduling and "Insufficient nvidia.com/gpu" in scheduling[0]["message"]
    finally:
        cluster.delete("pods", NS, job["metadata"]["name"])
        cluster.wait_gone("pods", NS, job["metadata"]["name"])


def test_image_that_cannot_be_pulled_fails_fast(khub: HubProcess, cluster: EmulatorProcess) -> None:
    message, elapsed, events = spawn_failure(khub, "alice", "broken", {"profile": "broken-image"})
    assert BAD_IMAGE in message and re.search(r"ErrImagePull|ImagePullBackOff", message), message
    assert "no such host" in message  # the pull error itself
    pulls = [e["raw_event"]["reason"] for e in events if "raw_event" in e]
    assert set(pulls) <= {"Scheduled", "Pulling", "Failed", "BackOff"}, pulls
    assert elapsed < FAST, f"failed after {elapsed:.0f}s; start_timeout is {START_TIMEOUT}s"
    usage = khub.usage("alice")
    assert usage["usage"]["servers"] == 0 and usage["usage"]["cpu"] == 0
    deadline = time.monotonic() + 30
    while pods_of(cluster, "alice") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pods_of(cluster, "alice") == []


def test_hub_restart_keeps_pods_and_counts_them_once(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    hub = khub
    assert hub.spawn("alice", "r1", {"profile": "gpu-a100", "gpus": 2}).status_code in (201, 202)
    hub.wait_ready("alice", "r1", timeout=120)
    pod_uid = pod_of(cluster, hub, "alice", "r1")["metadata"]["uid"]

    hub.stop()  # cleanup_servers = False: the pod keeps running
    assert cluster.get("pods", NS, hub_pod_name(cluster, "alice")) is not None
    hub.start()

    assert hub.wait_ready("alice", "r1", timeout=60)
    assert pod_of(cluster, hub, "alice", "r1")["metadata"]["uid"] == pod_uid  # the same pod
    assert "started" in through_proxy(hub, "alice", "r1", "api/status")
    usage = hub.usage("alice")
    assert usage["usage"]["gpus"] == 2 and usage["pools"]["nvidia-a100"]["used"] == 2

    # fits only if r1 is counted once: 2 + 1 = 3 GPUs, alice's limit (and the node's)
    assert hub.spawn("alice", "r2", {"profile": "gpu-a100", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("alice", "r2", timeout=120)
    r = hub.spawn("alice", "r3", {"profile": "gpu-a100", "gpus": 1})
    assert r.status_code == 403
    assert r.json()["message"] == (
        "GPU quota exceeded: ml-research allows 3 GPUs per user; running 3 + requested 1 = 4"
    )
    assert len(pods_of(cluster, "alice")) == 2


def hub_pod_name(cluster: EmulatorProcess, user: str) -> str:
    (pod,) = pods_of(cluster, user)
    name: str = pod["metadata"]["name"]
    return name


def test_gpu_override_in_a_profile_stops_the_hub(tmp_path: Path, cluster: EmulatorProcess) -> None:
    bad = KUBE_POLICY + (
        'c.ProfileSpawner.profiles = [*c.ProfileSpawner.profiles, {"slug": "sneaky", "cpu": 1,\n'
        '    "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "8"}}}]\n'
    )
    hub = HubProcess(tmp_path, TEST_POLICY + bad, env={"DSPLATFORM_MODE": "kubernetes",
                                                        "KUBECONFIG": str(cluster.kubeconfig)})  # fmt: skip
    with pytest.raises(RuntimeError, match="hub exited with 1") as info:
        hub.start()
    assert (
        "c.ProfileSpawner.profiles[3] ('sneaky'): key 'kubespawner_override': "
        "extra_resource_limits['nvidia.com/gpu'] requests GPUs outside the quota"
    ) in str(info.value)


def test_a_notebook_job_runs_once_as_a_pod_in_the_users_workspace(
    khub: HubProcess, cluster: EmulatorProcess
) -> None:
    """A job's pod mounts the workspace claim of the user's default server (where the
    notebook is), runs papermill with the parameters, reports, and never restarts."""
    import nbformat

    from .jobs import submit, wait_job

    hub = khub
    cluster.create("persistentvolumeclaims", NS, {
        "metadata": {"name": "claim-alice"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    claim = cluster.state / "cluster" / "volumes" / NS / "claim-alice"
    (claim / "work").mkdir(parents=True)
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}  # fmt: skip
    book.cells = [
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, pathlib\n"
            "out = pathlib.Path(os.environ['DSPLATFORM_WORKSPACE']) / 'work' / 'out.txt'\n"
            "out.write_text(f\"{n * 2} {os.environ['DSPLATFORM_PROFILE']}\")"
        ),
    ]
    nbformat.write(book, claim / "work" / "double.ipynb")
    r = submit(hub, "alice", {"notebook": "work/double.ipynb", "profile": "cpu-small",
                              "cpu": 0.5, "memory": "1G", "parameters": {"n": 21}})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    done = wait_job(hub, "alice", job_id, timeout=240)
    assert done["state"] == "succeeded", done
    assert (claim / "work" / "out.txt").read_text() == "42 cpu-small"
    executed = nbformat.read(claim / "work" / "jobs" / job_id / "double.ipynb", as_version=4)
    assert any("n = 21" in c.source for c in executed.cells)  # papermill's injected cell
    assert (claim / "work" / "jobs" / job_id / "log.txt").exists()
    assert hub.usage("alice")["usage"]["cpu"] == 0  # its grant given back
    # the job's server is removed (KubeSpawner's delete_forever): the claim is not its own
    deadline = time.monotonic() + 60
    while f"job-{job_id}" in (hub.api("GET", "/users/alice").json().get("servers") or {}):
        assert time.monotonic() < deadline, "the job's server was not removed"
        time.sleep(0.5)
    time.sleep(2)
    assert cluster.get("persistentvolumeclaims", NS, "claim-alice") is not None
    assert (claim / "work" / "double.ipynb").exists()
