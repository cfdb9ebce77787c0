"""The emulated cluster: API operations on the store, the scheduler loop, events, pod IPs.

The HTTP layer (:mod:`.server`) turns requests into calls of :class:`Cluster` and its
:class:`ApiError` into ``Status`` responses; the scheduler binds pending pods to nodes
(:mod:`.scheduling`), and a :class:`~.kubelet.PodRunner` runs each bound pod.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ipaddress
import random
import secrets
import socket
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .kubelet import Image, PodRunner, decode_secret, set_condition
from .patch import PatchError, apply_patch
from .scheduling import NodeSpec, parse_quantity, pod_requests, schedule
from .store import RESOURCES, Store, now
from .validation import admit, already_exists, default_pod, not_found, status


class ApiError(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.body = body
        self.code = int(body["code"])


@dataclass
class Config:
    """What the emulated cluster looks like and how fast its kubelet backs off."""

    state_dir: Path
    nodes: list[NodeSpec] = field(default_factory=lambda: [NodeSpec()])
    namespaces: list[str] = field(default_factory=lambda: ["default"])
    unpullable: list[str] = field(default_factory=list)  # fnmatch patterns of image names
    pod_subnet: str = ""  # e.g. "127.23.7": pods get .2, .3, ...; "" = a random 127.x.y
    image: Image = field(default_factory=lambda: Image(bin_dir=str(Path(sys.executable).parent)))
    pull_backoff: float = 1.0  # kubelet: 10 s doubling; shorter here so tests see both states
    restart_backoff: float = 2.0  # kubelet: 10 s doubling
    reschedule_every: float = 2.0


class Cluster:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store()
        self.runners: dict[str, PodRunner] = {}  # pod uid -> runner
        self.stopping: dict[str, asyncio.Task[None]] = {}
        self.ips: dict[str, str] = {}  # pod uid -> ip
        self.devices: dict[str, tuple[str, list[str]]] = {}  # pod uid -> (node, device ids)
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task[None] | None = None
        self.closed = False
        subnet = config.pod_subnet or f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.subnet = subnet
        self.host_ip = f"{subnet}.1"
        self._next_ip = 2
        for name in config.namespaces:
            self.store.add("namespaces", _namespace(name))
        for node in config.nodes:
            self.store.add("nodes", node.manifest(self.host_ip))
        self.store.listeners.append(self._changed)
        self._attempts: dict[str, tuple[Any, float]] = {}  # pod uid -> (fit inputs, time)

    # --- API operations -------------------------------------------------------------------
    def _kind(self, plural: str) -> tuple[str, bool]:
        if plural not in RESOURCES:
            raise ApiError(
                status(404, "NotFound", "the server could not find the requested resource")
            )
        return RESOURCES[plural]

    def _check_namespace(self, namespace: str) -> None:
        if namespace and self.store.get("namespaces", "", namespace) is None:
            raise ApiError(not_found("namespaces", namespace))

    def create(self, plural: str, namespace: str, body: Any) -> dict[str, Any]:
        kind, namespaced = self._kind(plural)
        if plural == "nodes":
            raise ApiError(status(405, "MethodNotAllowed", "nodes are the emulator's (--node)"))
        if not isinstance(body, dict):
            raise ApiError(status(400, "BadRequest", "the body must be a JSON object"))
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", kind)
        if obj["kind"] != kind:
            raise ApiError(
                status(400, "BadRequest", f"the kind {obj['kind']!r} does not match {plural}")
            )
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5)
            )
        if namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(
                    status(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    )
                )
            meta["namespace"] = namespace
            self._check_namespace(namespace)
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        problem = admit(kind, obj)
        if problem:
            raise ApiError(problem)
        if self.store.get(plural, meta.get("namespace", ""), meta["name"]) is not None:
            raise ApiError(already_exists(plural, meta["name"]))
        _defaults(plural, obj)
        return self.store.add(plural, obj)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self._kind(plural)
        obj = self.store.get(plural, namespace, name)
        if obj is None:
            raise ApiError(not_found(plural, name))
        return copy.deepcopy(obj)

    def replace(
        self, plural: str, namespace: str, name: str, body: Any, patch_type: str = ""
    ) -> dict[str, Any]:
        """PUT (``patch_type`` "") or PATCH; metadata bookkeeping and status are kept."""
        kind, _ = self._kind(plural)
        old = self.get(plural, namespace, name)
        if patch_type:
            try:
                new = apply_patch(patch_type, old, body)
            except PatchError as e:
                raise ApiError(
                    status(400 if "format" not in str(e) else 415, "BadRequest", str(e))
                ) from None
        else:
            if not isinstance(body, dict):
                raise ApiError(status(400, "BadRequest", "the body must be a JSON object"))
            new = copy.deepcopy(body)
            sent = (new.get("metadata") or {}).get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                        {"name": name, "kind": plural},
                    )
                )
        new.setdefault("metadata", {})
        for key in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
        new["metadata"].pop("resourceVersion", None)
        new.setdefault("apiVersion", "v1")
        new.setdefault("kind", kind)
        if "status" in old and not patch_type:
            new["status"] = old["status"]
        problem = admit(kind, new, old if kind == "Pod" else None)
        if problem:
            raise ApiError(problem)
        return self.store.modify(plural, new)

    def delete(self, plural: str, namespace: str, name: str, grace: int | None) -> dict[str, Any]:
        self._kind(plural)
        obj = self.store.get(plural, namespace, name)
        if obj is None:
            raise ApiError(not_found(plural, name))
        if plural == "nodes":
            raise ApiError(status(405, "MethodNotAllowed", "nodes are the emulator's (--node)"))
        if plural != "pods" or obj["metadata"]["uid"] not in self.runners:
            return self.store.remove(plural, namespace, name) or obj
        meta = obj["metadata"]
        if grace is None:
            grace = int(obj["spec"].get("terminationGracePeriodSeconds", 30))
        if "deletionTimestamp" not in meta or grace < meta.get(
            "deletionGracePeriodSeconds", grace + 1
        ):
            meta["deletionTimestamp"] = now()
            meta["deletionGracePeriodSeconds"] = grace
            return self.store.modify("pods", obj)
        return copy.deepcopy(obj)

    def lookup(
        self, kind: str, name: str, namespace: str | None = None
    ) -> Mapping[str, str] | None:
        """A secret's (decoded) or config map's data, for env and volumes."""
        plural = "secrets" if kind == "secretRef" else "configmaps"
        for obj in self.store.items(plural):
            if obj["metadata"]["name"] == name and (
                namespace is None or obj["metadata"]["namespace"] == namespace
            ):
                data = dict(obj.get("data") or {})
                return decode_secret(data) if plural == "secrets" else data
        return None

    # --- events ---------------------------------------------------------------------------
    def record_event(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        kind: str = "Normal",
        component: str = "kubelet",
        field_path: str = "",
    ) -> None:
        meta = obj["metadata"]
        for event in self.store.items("events", meta["namespace"]):
            io = event["involvedObject"]
            if (io.get("uid"), io.get("fieldPath", ""), event["reason"], event["message"]) == (
                meta["uid"],
                field_path,
                reason,
                message,
            ):
                event["count"] += 1
                event["lastTimestamp"] = now()
                self.store.modify("events", event)
                return
        involved = {
            "kind": obj.get("kind", "Pod"),
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        source: dict[str, str] = {"component": component}
        node = (obj.get("spec") or {}).get("nodeName")
        if component == "kubelet" and node:
            source["host"] = node
        self.store.add(
            "events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name']}.{secrets.token_hex(8)}",
                    "namespace": meta["namespace"],
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": kind,
                "source": source,
                "firstTimestamp": now(),
                "lastTimestamp": now(),
                "count": 1,
                "eventTime": None,
                "reportingComponent": component,
                "reportingInstance": source.get("host", ""),
            },
        )

    # --- scheduler and kubelet loop -------------------------------------------------------
    def _changed(self, kind: str, plural: str, obj: Mapping[str, Any]) -> None:
        if plural in ("pods", "persistentvolumeclaims"):
            self.wake.set()

    def start(self) -> None:
        self.loop_task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        """Stop scheduling, then every pod's processes."""
        # a flag, not cancel(): Python 3.11's wait_for can swallow a cancellation that
        # arrives together with a wake-up, and the loop would run on
        self.closed = True
        self.wake.set()
        if self.loop_task is not None:
            await self.loop_task
        await asyncio.gather(
            *(r.stop(2) for r in list(self.runners.values())), return_exceptions=True
        )

    async def _loop(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config.reschedule_every)
            self.wake.clear()
            if self.closed:
                return
            try:
                self.reconcile()
            except Exception as e:  # keep the cluster alive; the test sees the pod stuck
                print(f"kube emulator: reconcile failed: {e!r}", file=sys.stderr, flush=True)

    def used(self) -> dict[str, dict[str, Decimal]]:
        per_node: dict[str, dict[str, Decimal]] = {}
        for pod in self.store.items("pods"):
            node = pod["spec"].get("nodeName")
            if node and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                totals = per_node.setdefault(node, {})
                for k, v in pod_requests(pod).items():
                    totals[k] = totals.get(k, Decimal(0)) + v
        return per_node

    def reconcile(self) -> None:
        for pod in list(self.store.items("pods")):
            meta, spec = pod["metadata"], pod["spec"]
            uid = meta["uid"]
            if "deletionTimestamp" in meta:
                if uid in self.runners and uid not in self.stopping:
                    self.stopping[uid] = asyncio.ensure_future(self._terminate(pod))
                elif uid not in self.runners:
                    self.store.remove("pods", meta["namespace"], meta["name"])
            elif not spec.get("nodeName"):
                self._schedule(pod)
            elif uid not in self.runners:
                self._run(pod)

    def _schedule(self, pod: dict[str, Any]) -> None:
        claims = {
            c["metadata"]["name"]
            for c in self.store.items("persistentvolumeclaims", pod["metadata"]["namespace"])
        }
        used = self.used()
        inputs = (sorted(claims), sorted((n, sorted(u.items())) for n, u in used.items()))
        uid, clock = pod["metadata"]["uid"], asyncio.get_running_loop().time()
        last = self._attempts.get(uid)
        if (
            last is not None
            and last[0] == inputs
            and clock - last[1] < self.config.reschedule_every
        ):
            return  # nothing changed that could make it fit: retry later, as the scheduler backs off
        self._attempts[uid] = (inputs, clock)
        node, message = schedule(pod, self.config.nodes, used, claims)
        st = pod.setdefault("status", {})
        if node is None:
            before = next((c for c in st.get("conditions", []) if c["type"] == "PodScheduled"), {})
            set_condition(st, "PodScheduled", False, "Unschedulable", message)
            if before.get("message") != message:
                self.store.modify("pods", pod)
            self.record_event(pod, "FailedScheduling", message, "Warning", "default-scheduler")
            return
        self._attempts.pop(uid, None)
        pod["spec"]["nodeName"] = node
        set_condition(st, "PodScheduled", True)
        self.store.modify("pods", pod)
        meta = pod["metadata"]
        self.record_event(
            pod,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            component="default-scheduler",
        )

    def _run(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        ports = [
            p["containerPort"]
            for c in pod["spec"].get("containers") or []
            for p in c.get("ports") or []
        ]
        ip = self.ips.get(uid) or self._allocate_ip(ports)
        self.ips[uid] = ip
        node = pod["spec"]["nodeName"]
        # the device plugin's part: the GPUs the scheduler counted go to this pod
        wanted = sum(int(v) for k, v in pod_requests(pod).items() if k.endswith("/gpu"))
        taken = {d for n, ds in self.devices.values() if n == node for d in ds}
        spec = next(n for n in self.config.nodes if n.name == node)
        total = sum(
            int(parse_quantity(v)) for k, v in spec.allocatable.items() if k.endswith("/gpu")
        )
        devices = [str(i) for i in range(total) if str(i) not in taken][:wanted]
        self.devices[uid] = (node, devices)
        runner = self.runners[uid] = PodRunner(self, pod, ip, devices)
        runner.start()

    def _allocate_ip(self, ports: list[int]) -> str:
        in_use = set(self.ips.values())
        for _ in range(253):
            n, self._next_ip = self._next_ip, 2 + (self._next_ip - 1) % 253
            ip = f"{self.subnet}.{n}"
            if ip not in in_use and all(_port_free(ip, p) for p in ports):
                return ip
        raise RuntimeError(f"no free pod address in {self.subnet}.0/24")

    async def _terminate(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        try:
            await self.runners[uid].stop(float(meta.get("deletionGracePeriodSeconds", 30)))
        finally:
            self.runners.pop(uid, None)
            self.stopping.pop(uid, None)
            self.ips.pop(uid, None)
            self.devices.pop(uid, None)
            current = self.store.get("pods", meta["namespace"], meta["name"])
            if current is not None and current["metadata"]["uid"] == uid:
                self.store.remove("pods", meta["namespace"], meta["name"])


def _port_free(ip: str, port: int) -> bool:
    ipaddress.ip_address(ip)
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _defaults(plural: str, obj: dict[str, Any]) -> None:
    """What the API server (and its admission plugins and controllers) fill in."""
    if plural == "pods":
        default_pod(obj)
    elif plural == "persistentvolumeclaims":  # dynamically provisioned and bound at once
        spec = obj.setdefault("spec", {})
        spec.setdefault("storageClassName", "standard")
        spec.setdefault("volumeMode", "Filesystem")
        spec["volumeName"] = f"pvc-{secrets.token_hex(16)}"
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        obj["status"] = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
            "capacity": {"storage": storage},
        }
    elif plural == "secrets":  # stringData is write-only: merged into data, base64
        obj.setdefault("type", "Opaque")
        strings = obj.pop("stringData", None) or {}
        obj["data"] = {
            **(obj.get("data") or {}),
            **{k: base64.b64encode(v.encode()).decode() for k, v in strings.items()},
        }
    elif plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}")
    elif plural == "namespaces":
        obj["status"] = {"phase": "Active"}
