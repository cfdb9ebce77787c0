"""A Kubernetes API emulator for tests: real KubeSpawner against a small, honest cluster.

No Kubernetes can run on these machines (no kube-apiserver, kind or k3s package, no
container engine), so dsplatform's Kubernetes mode is tested against this emulator: an
aiohttp server speaking the core/v1 REST subset that KubeSpawner and kubernetes_asyncio use
(pods, PVCs, secrets, services, config maps, events, nodes, namespaces; create, get, list,
replace, patch, delete; list + watch with resourceVersion, label and field selectors), with

* admission: every object written is validated against the official schemas
  (``kubernetes-validate``, strict) and the API server's extra rules, and refused with the
  same ``Status`` objects (422 ``Invalid``, 409 ``AlreadyExists``, 404 ``NotFound``), see
  :mod:`.validation`;
* a scheduler that fits pods on nodes with allocatable cpu, memory and ``nvidia.com/gpu``,
  labels and taints, and reports ``FailedScheduling`` in kube-scheduler's words
  (:mod:`.scheduling`);
* a kubelet that runs each pod's init containers, then its containers, as local processes
  in the hub's Python environment, each pod on its own loopback address, with the states,
  conditions and events a kubelet reports, image pulls that fail for the images it is told
  to fail, and termination on delete (:mod:`.kubelet`).

Why not ``kmock`` (PyPI, 0.8, evaluated for this): it is an aiohttp mock server with a
stateful "Kubernetes emulator" mode, but its objects get no ``resourceVersion``, ``uid``
or ``creationTimestamp`` (KubeSpawner's reflector reads ``metadata.resourceVersion`` of
every watch event), its list answers a placeholder resourceVersion, its watches ignore
``resourceVersion``, ``timeoutSeconds`` and label/field selectors, it does no admission,
and its error ``reason`` strings are not the API server's (``AlreadyExists`` ...).
Adding all of that through its DSL would be more code than this emulator's store and
server, and we need the scheduler and kubelet on top anyway.

Standalone (for trying Kubernetes mode by hand, see the README)::

    python -m tests.kube_emulator --host 127.0.0.1 --port 6443 --kubeconfig /tmp/kubeconfig

What it is not: a real API server (no auth, RBAC, admission webhooks, quotas, server-side
apply, other API groups), scheduler (first fit; no affinity terms, spreading, preemption),
kubelet (no images, no isolation: processes run as the emulator's user in the hub's
environment; no limits enforced, no probes) or network (no services, DNS or policies).
"""

from __future__ import annotations

from pathlib import Path

from .cluster import ApiError, Cluster, Config
from .kubelet import Image
from .scheduling import NodeSpec
from .server import start_server

__all__ = ["ApiError", "Cluster", "Config", "Image", "NodeSpec", "kubeconfig", "start_server"]


def kubeconfig(server: str, namespace: str = "default") -> str:
    """A kubeconfig that points kubectl, kubernetes_asyncio and KubeSpawner at ``server``."""
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: dsplatform-emulator\n"
        f'  cluster: {{server: "{server}"}}\n'
        "users:\n"
        "- name: dsplatform-emulator\n"
        "  user: {token: emulator}\n"
        "contexts:\n"
        "- name: dsplatform-emulator\n"
        "  context: {cluster: dsplatform-emulator, user: dsplatform-emulator, "
        f"namespace: {namespace}}}\n"
        "current-context: dsplatform-emulator\n"
    )


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> None:
    """Write atomically: whoever waits for the file sees it whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(kubeconfig(server, namespace))
    tmp.replace(path)
