"""The scheduler's part of the emulator: resource quantities, node fit and its messages (pure).

It filters nodes the way kube-scheduler's default plugins do, in their order (taints and
tolerations, node selector, resource fit) after the volume pre-check (a claim that does not
exist blocks every node), and writes the same ``FailedScheduling`` message, e.g.
``0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node
affinity/selector. preemption: ...``. Not modelled: affinity terms, topology spread, pod
(anti-)affinity, host ports, volume topology, preemption itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
QUANTITY_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)


class QuantityError(ValueError):
    pass


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``, ``8``, ``"1e3"``) as a Decimal."""
    if isinstance(value, bool):
        raise QuantityError(QUANTITY_ERROR)
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    match = _QUANTITY_RE.match(text)
    if not match:
        raise QuantityError(QUANTITY_ERROR)
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:
        raise QuantityError(QUANTITY_ERROR) from None
    if suffix in _SUFFIX:
        return base * _SUFFIX[suffix]
    if suffix[:1] in "eE":
        try:
            return base * Decimal(10) ** int(suffix[1:])
        except ValueError:
            raise QuantityError(QUANTITY_ERROR) from None
    raise QuantityError(QUANTITY_ERROR)


def container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    """A container's requests (a resource with only a limit requests its limit)."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    return {k: parse_quantity(v) for k, v in {**limits, **requests}.items()}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: the sum over its containers, at least the
    largest init container (they run one at a time), plus one pod slot."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, v in container_requests(c).items():
            total[k] = total.get(k, Decimal(0)) + v
    for c in spec.get("initContainers") or []:
        for k, v in container_requests(c).items():
            total[k] = max(total.get(k, Decimal(0)), v)
    total["pods"] = Decimal(1)
    return total


@dataclass
class NodeSpec:
    """One emulated node: what it can hold, its labels and taints."""

    name: str = "node-1"
    allocatable: dict[str, str] = field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi", "pods": "110"}
    )
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeSpec:
        unknown = set(data) - {"name", "allocatable", "labels", "taints"}
        if unknown:
            raise ValueError(f"unknown node keys {sorted(unknown)}")
        node = cls(
            name=str(data.get("name", "node-1")),
            allocatable={k: str(v) for k, v in dict(data.get("allocatable") or {}).items()},
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
            taints=[dict(t) for t in data.get("taints") or []],
        )
        node.allocatable.setdefault("pods", "110")
        for value in node.allocatable.values():
            parse_quantity(value)
        return node

    def manifest(self, host_ip: str) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": self.taints} if self.taints else {},
            "status": {
                "capacity": dict(self.allocatable),
                "allocatable": dict(self.allocatable),
                "addresses": [
                    {"type": "InternalIP", "address": host_ip},
                    {"type": "Hostname", "address": self.name},
                ],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": _NODE_INFO,
            },
        }


_NODE_INFO = {
    "architecture": "amd64",
    "bootID": "",
    "containerRuntimeVersion": "emulated://local-processes",
    "kernelVersion": "",
    "kubeProxyVersion": "",
    "kubeletVersion": "v1.33.0-emulated",
    "machineID": "",
    "operatingSystem": "linux",
    "osImage": "dsplatform kube emulator",
    "systemUUID": "",
}


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Does any toleration match the taint (key, operator Equal/Exists, value, effect)?"""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_reasons(pod: Mapping[str, Any], node: NodeSpec, used: Mapping[str, Decimal]) -> list[str]:
    """Why ``pod`` does not fit ``node`` ([] = it fits), in kube-scheduler's words."""
    spec = pod.get("spec") or {}
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            spec.get("tolerations") or [], taint
        ):
            key, value = taint.get("key", ""), taint.get("value", "")
            return [f"node(s) had untolerated taint {{{key}: {value}}}"]
    labels = node.manifest("").get("metadata", {}).get("labels", {})
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return ["node(s) didn't match Pod's node affinity/selector"]
    if spec.get("nodeName") and spec["nodeName"] != node.name:
        return ["node(s) didn't match the requested node name"]
    reasons = []
    for resource, amount in sorted(pod_requests(pod).items()):
        if amount <= 0:
            continue
        have = parse_quantity(node.allocatable.get(resource, "0"))
        if used.get(resource, Decimal(0)) + amount > have:
            reasons.append("Too many pods" if resource == "pods" else f"Insufficient {resource}")
    return reasons


def missing_claims(pod: Mapping[str, Any], claims: set[str]) -> list[str]:
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes
        if v.get("persistentVolumeClaim")
        and v["persistentVolumeClaim"].get("claimName") not in claims
    ]


def schedule(
    pod: Mapping[str, Any],
    nodes: Sequence[NodeSpec],
    used: Mapping[str, Mapping[str, Decimal]],
    claims: set[str],
) -> tuple[str | None, str]:
    """Pick a node for ``pod`` (first fit) -> (node name, "") or (None, FailedScheduling
    message). ``used`` is what the pods already bound use per node; ``claims`` the names of
    the PVCs in the pod's namespace."""
    n = len(nodes)
    missing = missing_claims(pod, claims)
    if missing:
        return None, (
            f'0/{n} nodes are available: persistentvolumeclaim "{missing[0]}" not found. '
            f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for "
            "scheduling."
        )
    counts: Counter[str] = Counter()
    helpful = 0
    for node in nodes:
        reasons = node_reasons(pod, node, used.get(node.name, {}))
        if not reasons:
            return node.name, ""
        counts.update(reasons)
        helpful += all(r.startswith(("Insufficient", "Too many")) for r in reasons)
    summary = ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))
    preemption = []
    if helpful:
        preemption.append(f"{helpful} No preemption victims found for incoming pod")
    if n - helpful:
        preemption.append(f"{n - helpful} Preemption is not helpful for scheduling")
    return None, (
        f"0/{n} nodes are available: {summary}. "
        f"preemption: 0/{n} nodes are available: {', '.join(preemption)}."
    )
