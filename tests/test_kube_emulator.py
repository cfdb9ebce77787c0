"""The Kubernetes-API emulator itself, through the real kubernetes_asyncio client: admission
(422/409/404 Status objects), watch semantics, scheduling, the kubelet's processes, states
and events, and that everything it serves is valid per the official schemas."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiException, Configuration, CoreV1Api
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.watch import Watch

from hub_ext.spawners.kube_failures import start_failure

from .kube_emulator import Cluster, Config, NodeSpec, start_server
from .kube_emulator.patch import PatchError, apply_patch
from .kube_emulator.process import EmulatorProcess
from .kube_emulator.scheduling import parse_quantity, schedule

GPU_NODE = {"name": "gpu-1", "allocatable": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"},
            "labels": {"gpu": "a100"}, "taints": [{"key": "gpu", "effect": "NoSchedule"}]}  # fmt: skip
TOLERATE = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]


class Emulator:
    def __init__(self, cluster: Cluster, api: CoreV1Api, url: str) -> None:
        self.cluster, self.api, self.url = cluster, api, url

    async def wait(self, name: str, test: Any, timeout: float = 30) -> dict[str, Any]:
        """Poll pod ``name`` (as a dict) until ``test(pod)``."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.cluster.store.get("pods", "default", name)
            if pod is not None and test(pod):
                return pod
            if time.monotonic() > deadline:
                raise TimeoutError(json.dumps(pod, indent=1)[-3000:])
            await asyncio.sleep(0.1)

    def events(self, name: str) -> list[tuple[str, str]]:
        return [(e["reason"], e["message"]) for e in self.cluster.store.items("events", "default")
                if e["involvedObject"]["name"] == name]  # fmt: skip


@pytest_asyncio.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    config = Config(state_dir=tmp_path, nodes=[NodeSpec.from_dict(GPU_NODE)], unpullable=["*:missing"],
                    pull_backoff=0.3, restart_backoff=0.3, reschedule_every=0.5)  # fmt: skip
    cluster = Cluster(config)
    runner, port = await start_server(cluster, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with ApiClient(Configuration(host=url)) as client:
            yield Emulator(cluster, CoreV1Api(client), url)
    finally:
        await cluster.close()
        await runner.cleanup()


def pod_body(name: str = "p", **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", "import time; time.sleep(60)"],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "t"}},
            "spec": {"tolerations": TOLERATE, "containers": [container], **spec}}  # fmt: skip


# --- admission ------------------------------------------------------------------------------

INVALID = [
    ("unknown field", lambda p: p["spec"]["containers"][0].update(resourcez={}),
     "spec.containers[0].resourcez", 'unknown field "spec.containers[0].resourcez"'),
    ("wrong type", lambda p: p["spec"]["containers"][0].update(ports=[{"containerPort": "http"}]),
     "spec.containers[0].ports[0].containerPort", "Invalid value"),
    ("gpu request != limit", lambda p: p["spec"]["containers"][0].update(
        resources={"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "1"}}),
     "spec.containers[0].resources.requests[nvidia.com/gpu]", 'Invalid value: "1": must be equal to nvidia.com/gpu limit of 2'),
    ("gpu request without limit", lambda p: p["spec"]["containers"][0].update(resources={"requests": {"nvidia.com/gpu": "1"}}),
     "spec.containers[0].resources.limits", "Limit must be set for non overcommitable resources"),
    ("cpu request > limit", lambda p: p["spec"]["containers"][0].update(resources={"limits": {"cpu": "1"}, "requests": {"cpu": "1500m"}}),
     "spec.containers[0].resources.requests", 'Invalid value: "1500m": must be less than or equal to cpu limit of 1'),
    ("bad quantity", lambda p: p["spec"]["containers"][0].update(resources={"limits": {"memory": "lots"}}),
     "spec.containers[0].resources.limits[memory]", "quantities must match"),
    ("bad name", lambda p: p["metadata"].update(name="Alice_Pod"), "metadata.name", "RFC 1123 subdomain"),
    ("bad label value", lambda p: p["metadata"].update(labels={"user": "a@b"}), "metadata.labels", "a valid label"),
    ("no image", lambda p: p["spec"]["containers"][0].update(image=""), "spec.containers[0].image", "Required value"),
    ("mount of no volume", lambda p: p["spec"]["containers"][0].update(volumeMounts=[{"name": "home", "mountPath": "/h"}]),
     "spec.containers[0].volumeMounts[0].name", 'Not found: "home"'),
    ("duplicate container", lambda p: p["spec"]["containers"].append(dict(p["spec"]["containers"][0])),
     "spec.containers[1].name", 'Duplicate value: "main"'),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "change", "field", "fragment"), INVALID, ids=[c[0] for c in INVALID]
)
async def test_invalid_pods_get_422_like_the_api_server(
    emu: Emulator, case, change, field, fragment
) -> None:  # type: ignore[no-untyped-def]
    body = pod_body()
    change(body)
    with pytest.raises(ApiException) as info:
        await emu.api.create_namespaced_pod("default", body)
    assert info.value.status == 422
    status = json.loads(info.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"].startswith(f'Pod "{body["metadata"]["name"]}" is invalid: ')
    causes = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert field in causes and fragment in causes[field], causes
    assert emu.cluster.store.get("pods", "default", body["metadata"]["name"]) is None


@pytest.mark.asyncio
async def test_conflict_not_found_and_namespaces(emu: Emulator) -> None:
    created = await emu.api.create_namespaced_pod("default", pod_body())
    assert (
        created.metadata.uid
        and created.metadata.resource_version
        and created.metadata.creation_timestamp
    )
    for call, code, reason, message in [
        (emu.api.create_namespaced_pod("default", pod_body()), 409, "AlreadyExists", 'pods "p" already exists'),
        (emu.api.read_namespaced_pod("nope", "default"), 404, "NotFound", 'pods "nope" not found'),
        (emu.api.delete_namespaced_pod("nope", "default"), 404, "NotFound", 'pods "nope" not found'),
        (emu.api.create_namespaced_pod("elsewhere", pod_body()), 404, "NotFound", 'namespaces "elsewhere" not found'),
    ]:  # fmt: skip
        with pytest.raises(ApiException) as info:
            await call
        status = json.loads(info.value.body)
        assert (info.value.status, status["reason"], status["message"]) == (code, reason, message)
    await emu.api.create_namespace({"metadata": {"name": "elsewhere"}})
    await emu.api.create_namespaced_pod("elsewhere", pod_body())


# --- watch --------------------------------------------------------------------------------------


async def collect(emu: Emulator, **kwargs: Any) -> list[tuple[str, str, str]]:
    events = []
    async with Watch().stream(
        emu.api.list_namespaced_pod, "default", timeout_seconds=1, **kwargs
    ) as stream:
        async for event in stream:
            meta = event["raw_object"]["metadata"]
            events.append((event["type"], meta["name"], meta["resourceVersion"]))
    return events


@pytest.mark.asyncio
async def test_watch_from_a_resource_version_with_selectors(emu: Emulator) -> None:
    await emu.api.create_namespaced_pod("default", pod_body("before"))
    await emu.wait("before", lambda p: p["status"].get("phase") == "Running")
    listed = await emu.api.list_namespaced_pod("default")
    rv = listed.metadata.resource_version
    assert [p.metadata.name for p in listed.items] == ["before"]
    after = pod_body("after")
    after["metadata"]["labels"] = {"app": "other"}
    await emu.api.create_namespaced_pod("default", after)
    await emu.api.create_namespaced_pod("default", pod_body("third"))

    # from rv: only later changes (incl. the kubelet's status updates), in order, selected
    since = await collect(emu, resource_version=rv, label_selector="app=t")
    assert {name for _, name, _ in since} == {"third"}
    assert since[0][0] == "ADDED" and all(int(v) > int(rv) for _, _, v in since)
    assert [int(v) for _, _, v in since] == sorted(int(v) for _, _, v in since)
    # from "0": the current objects as ADDED first
    synthetic = await collect(
        emu, resource_version="0", label_selector="app in (t, other),app!=other"
    )
    assert [(t, n) for t, n, _ in synthetic[:2]] == [("ADDED", "before"), ("ADDED", "third")]
    assert {n for _, n, _ in await collect(emu, field_selector="metadata.name=after")} == {"after"}
    # KubeSpawner's event reflector selects events of pods
    fields = await emu.api.list_namespaced_event(
        "default", field_selector="involvedObject.kind=Pod"
    )
    assert fields.items and all(e.involved_object.kind == "Pod" for e in fields.items)
    with pytest.raises(ApiException) as info:
        await emu.api.list_namespaced_pod("default", field_selector="spec.image=x")
    assert info.value.status == 400 and "field label not supported: spec.image" in info.value.body


@pytest.mark.asyncio
async def test_watch_ends_at_timeout_and_expires_old_versions(emu: Emulator) -> None:
    started = time.monotonic()
    assert await collect(emu, resource_version=str(emu.cluster.store.rv)) == []
    assert 0.9 < time.monotonic() - started < 10
    emu.cluster.store.history = deque(emu.cluster.store.history, maxlen=3)
    for i in range(5):
        await emu.api.create_namespace({"metadata": {"name": f"n{i}"}})
    with pytest.raises(ApiException) as info:
        await collect(emu, resource_version="1")
    assert info.value.status == 410 and "too old resource version" in info.value.reason


# --- scheduling (pure) -----------------------------------------------------------------------------

CPU = NodeSpec.from_dict({"name": "cpu-1", "allocatable": {"cpu": "2", "memory": "4Gi"}})
GPU = NodeSpec.from_dict(GPU_NODE)


def spec_pod(limits: dict[str, str], init: dict[str, str] | None = None, tolerate: bool = True,
             selector: dict[str, str] | None = None, claim: str = "") -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": "i", "resources": {"limits": limits}}]
    }
    if init:
        spec["initContainers"] = [{"name": "i", "image": "i", "resources": {"limits": init}}]
    if tolerate:
        spec["tolerations"] = TOLERATE
    if selector:
        spec["nodeSelector"] = selector
    if claim:
        spec["volumes"] = [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]
    return {"spec": spec}


SCHEDULING = [
    (spec_pod({"nvidia.com/gpu": "2"}), {}, "gpu-1", ""),
    (spec_pod({"cpu": "2"}, tolerate=False), {}, "cpu-1", ""),
    (spec_pod({"nvidia.com/gpu": "3"}), {}, None,
     "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."),
    (spec_pod({"nvidia.com/gpu": "1"}), {"gpu-1": {"nvidia.com/gpu": parse_quantity(2)}}, None, "Insufficient nvidia.com/gpu"),
    (spec_pod({"nvidia.com/gpu": "1"}, tolerate=False), {}, None,
     "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint {gpu: }."),
    (spec_pod({"cpu": "1"}, selector={"gpu": "h100"}), {}, None,
     "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    (spec_pod({"cpu": "3", "memory": "9Gi"}), {}, None,
     "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory."),
    (spec_pod({"cpu": "1"}, init={"cpu": "4"}), {}, "gpu-1", ""),  # init containers: the max, not the sum
    (spec_pod({"cpu": "1"}, init={"cpu": "5"}), {}, None, "Insufficient cpu"),
    (spec_pod({"cpu": "1"}, claim="home"), {}, None,
     '0/2 nodes are available: persistentvolumeclaim "home" not found.'),
]  # fmt: skip


@pytest.mark.parametrize(("pod", "used", "node", "message"), SCHEDULING)
def test_scheduling_fit_and_messages(pod, used, node, message):  # type: ignore[no-untyped-def]
    chosen, why = schedule(pod, [CPU, GPU], used, claims=set())
    assert chosen == node
    assert message in why
    if chosen is None:
        assert "preemption: 0/2 nodes are available" in why


def test_quantities():
    assert parse_quantity("500m") == parse_quantity(0.5)
    assert parse_quantity("2Gi") == 2 * 1024**3 and parse_quantity("1e3") == 1000
    assert parse_quantity("10G") == 10**10
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity("lots")


# --- the kubelet ----------------------------------------------------------------------------------


async def get_when_listening(url: str, timeout: float = 15) -> str:
    """GET ``url`` (200 expected), retrying while the connection is refused."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    assert r.status == 200
                    return await r.text()
            except aiohttp.ClientConnectorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_a_pod_runs_on_its_own_address_with_its_volumes_and_env(emu: Emulator) -> None:
    await emu.api.create_namespaced_secret("default", {"metadata": {"name": "s"}, "data": {"token": base64.b64encode(b"sekret").decode()}})  # fmt: skip
    dump = ("import json, os; json.dump({k: os.environ.get(k) for k in ['HOSTNAME', 'POD_IP', 'OUT', 'TOKEN', "
            "'NVIDIA_VISIBLE_DEVICES', 'HOME', 'URL']} | {'cwd': os.getcwd()}, open(os.environ['OUT'], 'w'))")  # fmt: skip
    body = pod_body("web", volumes=[{"name": "work", "emptyDir": {}}], initContainers=[{
        "name": "prepare", "image": "python:3.11", "command": ["python", "-c", dump],
        "env": [{"name": "OUT", "value": "/work/env.json"}, {"name": "URL", "value": "http://0.0.0.0:8080/x"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        "resources": {"limits": {"nvidia.com/gpu": "1"}}}])  # fmt: skip
    body["spec"]["containers"] = [{
        "name": "web", "image": "python:3.11", "workingDir": "/work",
        "command": ["python", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        "ports": [{"containerPort": 8080}], "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]  # fmt: skip
    await emu.api.create_namespaced_pod("default", body)
    pod = await emu.wait("web", lambda p: p["status"].get("phase") == "Running" and
                         all(c["status"] == "True" for c in p["status"]["conditions"]))  # fmt: skip
    ip = pod["status"]["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1" and pod["spec"]["nodeName"] == "gpu-1"
    assert {c["type"] for c in pod["status"]["conditions"]} == {
        "PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}  # fmt: skip
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["ready"] is False
    (web,) = pod["status"]["containerStatuses"]
    assert web["ready"] and "running" in web["state"] and web["restartCount"] == 0

    # the main container serves what the init one wrote. Without a readinessProbe a container
    # is Ready once started (as in Kubernetes), which can be before it listens: poll a little.
    env = json.loads(await get_when_listening(f"http://{ip}:8080/env.json"))
    # OUT (under the mount) became the emptyDir's directory, which the web container serves
    # from (its workingDir /work); the init container ran in the image's home, in its rootfs
    assert Path(env["OUT"]).parent.is_relative_to(emu.cluster.config.state_dir / "pods")
    assert Path(env["OUT"]).parent.name == "work"
    assert env["cwd"] == env["HOME"] and env["HOME"].endswith("/rootfs/prepare/home/jovyan")
    assert env["HOSTNAME"] == "web" and env["POD_IP"] == ip and env["TOKEN"] == "sekret"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "0" and env["URL"] == f"http://{ip}:8080/x"
    log = await emu.api.read_namespaced_pod_log("web", "default")  # kubectl logs
    assert '"GET /env.json HTTP/1.1" 200' in log
    reasons = [r for r, _ in emu.events("web")]
    for reason in ("Scheduled", "Pulled", "Created", "Started"):
        assert reason in reasons

    pid = int(web["containerID"].rsplit("-", 1)[1])
    await emu.api.delete_namespaced_pod("web", "default", grace_period_seconds=1)
    deadline = time.monotonic() + 15
    while (
        emu.cluster.store.get("pods", "default", "web") is not None and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    assert emu.cluster.store.get("pods", "default", "web") is None
    assert not Path(f"/proc/{pid}").exists()  # the process group was terminated
    assert ("Killing", "Stopping container web") in emu.events("web")


@pytest.mark.asyncio
async def test_image_pull_failure_states_and_events(emu: Emulator) -> None:
    body = pod_body("pull")
    body["spec"]["containers"][0]["image"] = "example.org/team/app:missing"
    await emu.api.create_namespaced_pod("default", body)
    pod = await emu.wait("pull", lambda p: "ErrImagePull" in json.dumps(p.get("status", {})))
    failure = start_failure(pod)
    assert failure is not None and failure.reason == "ErrImagePull"
    assert "example.org/team/app:missing: not found" in failure.message
    await emu.wait("pull", lambda p: "ImagePullBackOff" in json.dumps(p.get("status", {})))
    messages = emu.events("pull")
    assert ("Failed", "Error: ErrImagePull") in messages and (
        "Failed",
        "Error: ImagePullBackOff",
    ) in messages
    assert ("BackOff", 'Back-off pulling image "example.org/team/app:missing"') in messages
    assert emu.cluster.store.get("pods", "default", "pull")["status"]["phase"] == "Pending"

    bad = pod_body("badname")
    bad["spec"]["containers"][0]["image"] = "Not A Valid Image"
    await emu.api.create_namespaced_pod("default", bad)
    pod = await emu.wait("badname", lambda p: "InvalidImageName" in json.dumps(p.get("status", {})))
    assert start_failure(pod) is not None


@pytest.mark.asyncio
async def test_failing_init_container_reports_its_output(emu: Emulator) -> None:
    body = pod_body("init", restartPolicy="OnFailure", initContainers=[{
        "name": "dsdata-preload", "image": "python:3.11", "terminationMessagePolicy": "FallbackToLogsOnError",
        "command": ["python", "-c", "import sys; print('preload: iris@v9: no such version'); sys.exit(3)"]}])  # fmt: skip
    await emu.api.create_namespaced_pod("default", body)
    pod = await emu.wait("init", lambda p: any(
        s.get("restartCount", 0) >= 1 for s in p["status"].get("initContainerStatuses", [])))  # fmt: skip
    (init,) = pod["status"]["initContainerStatuses"]
    terminated = init["lastState"].get("terminated") or init["state"]["terminated"]
    assert terminated["exitCode"] == 3 and "no such version" in terminated["message"]
    failure = start_failure(pod)
    assert failure is not None and failure.reason == "InitContainerFailed"
    assert "dsdata-preload exited with code 3: preload: iris@v9: no such version" in failure.message
    assert pod["status"]["phase"] == "Pending" and "containerStatuses" in pod["status"]


@pytest.mark.asyncio
async def test_a_missing_claim_blocks_scheduling_until_it_exists(emu: Emulator) -> None:
    await emu.api.create_namespaced_pod("default", pod_body("claims", volumes=[{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}]))  # fmt: skip
    pod = await emu.wait("claims", lambda p: "Unschedulable" in json.dumps(p.get("status", {})))
    assert (
        start_failure(pod) is not None
        and 'persistentvolumeclaim "home" not found' in start_failure(pod).message
    )  # type: ignore[union-attr]
    await emu.api.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "home"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    pod = await emu.wait("claims", lambda p: p["status"].get("phase") == "Running")
    assert start_failure(pod) is None


@pytest.mark.asyncio
async def test_everything_served_is_valid_per_the_schemas(emu: Emulator) -> None:
    await emu.api.create_namespaced_pod("default", pod_body("ok"))
    await emu.api.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    await emu.api.create_namespaced_pod("default", pod_body("stuck", nodeSelector={"gpu": "none"}))
    await emu.wait("ok", lambda p: p["status"].get("phase") == "Running")
    await emu.wait("stuck", lambda p: "Unschedulable" in json.dumps(p.get("status", {})))
    async with aiohttp.ClientSession() as http:
        for path, kind in [("namespaces/default/pods", "Pod"), ("namespaces/default/events", "Event"),
                           ("namespaces/default/persistentvolumeclaims", "PersistentVolumeClaim"),
                           ("nodes", "Node"), ("namespaces", "Namespace")]:  # fmt: skip
            async with http.get(f"{emu.url}/api/v1/{path}") as r:
                items = (await r.json())["items"]
            assert items, path
            for item in items:
                obj = {"apiVersion": "v1", "kind": kind, **item}
                assert kubernetes_validate.validate(obj, "1.33", strict=True) == "1.33", obj


# --- updates ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_patch_and_replace(emu: Emulator) -> None:
    await emu.api.create_namespaced_pod("default", pod_body())
    patched = await emu.api.patch_namespaced_pod(
        "p", "default", {"metadata": {"labels": {"extra": "1"}}}
    )
    assert patched.metadata.labels == {"app": "t", "extra": "1"}
    patched = await emu.api.patch_namespaced_pod(
        "p", "default", [{"op": "remove", "path": "/metadata/labels/extra"}]
    )
    assert patched.metadata.labels == {"app": "t"}
    with pytest.raises(ApiException) as info:  # pod specs are immutable but for a few fields
        await emu.api.patch_namespaced_pod("p", "default", {"spec": {"restartPolicy": "Never"}})
    assert info.value.status == 422 and "pod updates may not change fields" in info.value.body
    current = emu.cluster.store.get("pods", "default", "p")
    stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "1"}}
    with pytest.raises(ApiException) as info:
        await emu.api.replace_namespaced_pod("p", "default", stale)
    assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "Conflict"


@pytest.mark.parametrize(
    ("content_type", "doc", "patch", "expected"),
    [
        ("application/merge-patch+json", {"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}, {"a": {"c": 2, "d": 3}}),
        ("application/strategic-merge-patch+json", {"c": [{"name": "x", "v": 1}, {"name": "y"}]},
         {"c": [{"name": "x", "v": 2}, {"name": "y", "$patch": "delete"}]}, {"c": [{"name": "x", "v": 2}]}),
        ("application/json-patch+json", {"l": [1, 2]}, [{"op": "add", "path": "/l/-", "value": 3},
                                                         {"op": "replace", "path": "/l/0", "value": 0}], {"l": [0, 2, 3]}),
    ],
)  # fmt: skip
def test_patch_formats(content_type, doc, patch, expected):  # type: ignore[no-untyped-def]
    assert apply_patch(content_type, doc, patch) == expected


def test_patch_errors():
    with pytest.raises(PatchError, match="test failed"):
        apply_patch(
            "application/json-patch+json", {"a": 1}, [{"op": "test", "path": "/a", "value": 2}]
        )
    with pytest.raises(PatchError, match="unknown format"):
        apply_patch("text/plain", {}, {})


# --- standalone ---------------------------------------------------------------------------------------


def test_standalone_writes_a_kubeconfig_and_stops_its_pods(tmp_path: Path) -> None:
    emulator = EmulatorProcess(
        tmp_path, nodes=[{"name": "n", "allocatable": {"cpu": "1", "memory": "1Gi"}}]
    )
    emulator.start()
    try:
        assert "current-context: dsplatform-emulator" in emulator.kubeconfig.read_text()
        assert emulator.request("GET", "/version").json()["gitVersion"].startswith("v1.33")
        body = pod_body("sleeper")
        del body["spec"]["tolerations"]
        emulator.create("pods", "default", body)
        deadline = time.monotonic() + 20
        while "containerID" not in json.dumps(emulator.get("pods", "default", "sleeper")):
            assert time.monotonic() < deadline, emulator.log()
            time.sleep(0.1)
        pod = emulator.get("pods", "default", "sleeper")
        pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("-", 1)[1])  # type: ignore[index]
        assert Path(f"/proc/{pid}").exists()
    finally:
        emulator.stop()
    assert emulator.proc is not None and emulator.proc.returncode == 0, emulator.log()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()  # gone with the emulator
