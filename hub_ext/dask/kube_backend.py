"""dask-gateway's backend beside dsplatform-kube: schedulers and workers as pods.

The same admission as :class:`~hub_ext.dask.backend.PlatformBackend` (cluster options from
the user's profiles, the scheduler and every worker admitted by the hub's ledger, grants
given back when they stop, the hub's view reconciled at start); only where they run
differs. Each cluster gets a Secret (its TLS credentials and its scheduler's gateway token)
and a scheduler pod; each worker a pod of its own, sized by its grant, in the sandboxes'
namespace, with the user's profile image, their sandboxes' non-root user and hardening
(:mod:`hub_ext.dask.kube_pods`). The gateway itself runs in the hub's pod as a hub-managed
service and reaches the Kubernetes API with the hub's service account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import DBBackendBase
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.rest import ApiException
from traitlets import Float, Unicode

from hub_ext.dask.backend import PlatformBackend
from hub_ext.dask.kube_pods import (
    CERT_KEY,
    CLUSTER_LABEL,
    COMPONENT,
    CREDENTIALS_PATH,
    KEY_KEY,
    SCHEDULER,
    SECRET,
    TOKEN_ENV,
    WORKER,
    KubeIdentity,
    cluster_secret,
    dask_pod,
    pod_alive,
    pod_name,
    secret_name,
)
from hub_ext.spawners.kube_pod import label_value


def _identity(cluster: Any) -> KubeIdentity:
    kube = cluster.config.get("kube") or {}
    if not kube.get("namespace"):
        raise RuntimeError(f"cluster {cluster.name}: the hub gave no Kubernetes identity")
    return KubeIdentity.from_json(kube)


class PlatformKubeBackend(PlatformBackend):
    """Pods in the sandboxes' namespace, every worker admitted by the hub's ledger."""

    default_host = "0.0.0.0"  # in its own pod; the scheduler reports its pod's address

    delete_grace_period = Float(
        5, help="Seconds a scheduler's or worker's pod gets to stop.", config=True
    )

    namespace = Unicode(
        "",
        help="""The sandboxes' namespace (c.KubeSpawner.namespace): where, at start, Dask pods
        and Secrets of clusters this gateway does not know are deleted ("": none are).""",
        config=True,
    )

    _api: k8s.ApiClient | None = None

    async def setup(self, app: Any) -> None:
        from kubespawner.clients import load_config

        await asyncio.to_thread(load_config)  # in-cluster, else $KUBECONFIG (as KubeSpawner)
        self._api = k8s.ApiClient()
        await super().setup(app)  # requeues the clusters it ran: the client is ready
        if self.namespace:
            await self._delete_orphans(self.namespace)

    async def _delete_orphans(self, namespace: str) -> None:
        """Pods and Secrets of clusters this gateway does not run (it was killed and its
        clusters forgotten): their grants were given back, so they must not keep running."""
        known = {label_value(c.name) for c in self.db.active_clusters()}
        selector = f"{COMPONENT} in ({SCHEDULER},{WORKER},{SECRET}),{CLUSTER_LABEL}"
        pods = await self.core.list_namespaced_pod(namespace, label_selector=selector)
        secrets = await self.core.list_namespaced_secret(namespace, label_selector=selector)
        for kind, items in (("pod", pods.items), ("secret", secrets.items)):
            for obj in items:
                if obj.metadata.labels.get(CLUSTER_LABEL) not in known:
                    self.log.info("Deleting %s %s of a cluster this gateway does not run",
                                  kind, obj.metadata.name)  # fmt: skip
                    await self._delete(kind, namespace, obj.metadata.name)

    async def do_cleanup(self) -> None:
        if self._api is not None:
            await self._api.close()

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self._api)

    def check_runnable(self, user: Any, config: Any) -> None:
        if not (config.kube or {}).get("namespace"):
            raise PublicException(f"{user.name}'s sandboxes do not run on Kubernetes")

    # --- what each pod gets ----------------------------------------------------------------
    def get_tls_paths(self, cluster: Any) -> tuple[str, str]:
        return f"{CREDENTIALS_PATH}/{CERT_KEY}", f"{CREDENTIALS_PATH}/{KEY_KEY}"

    def get_env(self, cluster: Any) -> dict[str, str]:
        env: dict[str, str] = DBBackendBase.get_env(self, cluster)
        env.pop(TOKEN_ENV)  # from the cluster's Secret
        return env

    def _pod(self, cluster: Any, grant: Mapping[str, Any], command: list[str],
             env: dict[str, str], worker: str | None = None) -> dict[str, Any]:  # fmt: skip
        return dask_pod(_identity(cluster), cluster=cluster.name, user=cluster.username,
                        grant=grant, command=command, env=env, worker=worker)  # fmt: skip

    async def _create_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        try:
            await self.core.create_namespaced_pod(namespace, pod)  # type: ignore[arg-type]
        except ApiException as e:
            body = e.body.decode() if isinstance(e.body, bytes) else str(e.body or "")
            raise RuntimeError(
                f"pod {pod['metadata']['name']}: {e.status} {e.reason}: {body[:300]}"
            ) from None

    async def _delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            if kind == "pod":
                await self.core.delete_namespaced_pod(
                    name, namespace, grace_period_seconds=int(self.delete_grace_period)
                )
            else:
                await self.core.delete_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    # --- the scheduler -----------------------------------------------------------------------
    async def do_start_cluster(self, cluster: Any) -> Any:
        grant = dict(cluster.state.get("scheduler_grant") or {})
        if not grant:
            raise RuntimeError(f"cluster {cluster.name} has no scheduler grant from the hub")
        identity = _identity(cluster)
        state: dict[str, Any] = {"scheduler_grant": grant, "namespace": identity.namespace}
        yield state
        secret = cluster_secret(identity, cluster.name, cluster.username, cert=cluster.tls_cert,
                                key=cluster.tls_key, token=cluster.token)  # fmt: skip
        try:
            await self.core.create_namespaced_secret(identity.namespace, secret)  # type: ignore[arg-type]
        except ApiException as e:
            if e.status != 409:  # 409: created by an earlier try of this start
                raise
        state = {**state, "secret": secret_name(cluster.name)}
        yield state
        pod = self._pod(cluster, grant, self.get_scheduler_command(cluster),
                        self.get_scheduler_env(cluster))  # fmt: skip
        await self._create_pod(identity.namespace, pod)
        yield {**state, "pod": pod["metadata"]["name"]}

    async def do_stop_cluster(self, cluster: Any) -> None:
        namespace = cluster.state.get("namespace")
        if not namespace:
            return
        await self._delete("pod", namespace, pod_name(cluster.name))
        await self._delete("secret", namespace, secret_name(cluster.name))

    async def _pods(self, namespace: str, component: str) -> dict[str, dict[str, Any]]:
        answer = await self.core.list_namespaced_pod(
            namespace, label_selector=f"{COMPONENT}={component},{CLUSTER_LABEL}"
        )
        pods = self._api.sanitize_for_serialization(answer).get("items", [])  # type: ignore[union-attr]
        return {p["metadata"]["name"]: p for p in pods}

    async def _alive(self, objects: list[Any], component: str) -> list[bool]:
        namespaces = {o.state.get("namespace") for o in objects} - {None}
        pods: dict[str, dict[str, Any]] = {}
        for namespace in namespaces:
            pods.update(await self._pods(namespace, component))
        return [pod_alive(pods.get(o.state.get("pod", ""))) for o in objects]

    async def do_check_clusters(self, clusters: list[Any]) -> list[bool]:
        return await self._alive(clusters, SCHEDULER)

    # --- workers ----------------------------------------------------------------------------
    async def do_start_worker(self, worker: Any) -> Any:
        grant = dict(worker.state.get("grant") or {})
        if not grant:
            raise RuntimeError(f"worker {worker.name} has no grant from the hub")
        cluster = worker.cluster
        namespace = _identity(cluster).namespace
        pod = self._pod(cluster, grant, self.get_worker_command(cluster, worker.name),
                        self.get_worker_env(cluster), worker=worker.name)  # fmt: skip
        state = {"grant": grant, "namespace": namespace, "pod": pod["metadata"]["name"]}
        yield state
        await self._create_pod(namespace, pod)
        yield state

    async def do_stop_worker(self, worker: Any) -> None:
        if worker.state.get("pod"):
            await self._delete("pod", worker.state["namespace"], worker.state["pod"])

    async def do_check_workers(self, workers: list[Any]) -> list[bool]:
        return await self._alive(workers, WORKER)
