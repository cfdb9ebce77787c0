"""``dsplatform-kube``: KubeSpawner governed by the same profiles and quotas.

:func:`~hub_ext.spawners.kube_pod.pod_settings` maps a grant to KubeSpawner trait values (pure,
unit-tested against ``get_pod_manifest`` and the official Kubernetes schemas); the spawner
sets them before KubeSpawner builds the pod. While KubeSpawner waits for the pod,
:func:`~hub_ext.spawners.kube_failures.start_failure` reads its status: an unschedulable pod or an
image that cannot be pulled ends the spawn at once with the cluster's reason, the pod is
deleted and the reservation released (instead of waiting for ``start_timeout``).
"""

from __future__ import annotations

import copy
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Dict, List, Unicode, default

from hub_ext.admission.options import Request
from hub_ext.admission.reservations import Grant
from hub_ext.dask.kube_pods import KubeIdentity
from hub_ext.jobs.spec import SERVER_PREFIX as JOB_SERVER_PREFIX
from hub_ext.spawners.base import ProfileSpawner, SpawnRefusal
from hub_ext.spawners.kube_failures import FAIL_FAST_REASONS, start_failure
from hub_ext.spawners.kube_pod import label_value, pod_settings, preload_init_container

__all__ = ["ProfileKubeSpawner", "label_value", "pod_settings", "preload_init_container"]

# KubeSpawner traits that pod_settings merges with the admin's own values
MERGED_TRAITS = (
    "container_security_context",
    "extra_labels",
    "node_selector",
    "tolerations",
    "volumes",
    "volume_mounts",
    "extra_resource_limits",
    "extra_resource_guarantees",
)


# KubeSpawner's template fields, as _expand_user_properties fills them for the default server
DEFAULT_SERVER_FIELDS = {
    "{user_server}": "{username}",
    "{safe_user_server}": "{safe_username}",
    "{escaped_user_server}": "{escaped_username}--",
    "{servername}": "",
    "{safe_servername}": "",
    "{escaped_servername}": "",
    "{unescaped_servername}": "",
}


def _escape_braces(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: _escape_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_braces(v) for v in value]
    return value


class ProfileKubeSpawner(ProfileSpawner, KubeSpawner):
    """KubeSpawner with dsplatform profiles, quotas and sandbox environment."""

    gpu_resource_name = Unicode(
        "nvidia.com/gpu",
        help="""Extended resource name that requests GPUs (the device plugin's), e.g.
        "nvidia.com/gpu" or a MIG slice "nvidia.com/mig-1g.10gb".

            c.ProfileKubeSpawner.gpu_resource_name = "nvidia.com/gpu"
        """,
    ).tag(config=True)

    gpu_scheduling = Dict(
        {},
        help="""Node selector and tolerations per GPU type, added to pods that get GPUs of
        that type (merged with c.KubeSpawner.node_selector / tolerations).

            c.ProfileKubeSpawner.gpu_scheduling = {
                "nvidia-a100": {
                    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                },
            }
        """,
    ).tag(config=True)

    workspace_path = Unicode(
        "/home/jovyan",
        help="""Where the user's workspace is mounted in the pod (the image's home). It is
        the server's PVC when the profile has a disk, else an emptyDir shared by the dataset
        preload init container and the notebook. "" mounts nothing (e.g. when
        c.KubeSpawner.volume_mounts already mounts a home; a mount of yours at this path
        wins anyway). Sandboxes get it as DSPLATFORM_WORKSPACE.

            c.ProfileKubeSpawner.workspace_path = "/home/jovyan"
        """,
    ).tag(config=True)

    dataset_cache_volume = Dict(
        {},
        help="""The shared dataset cache: a volume source (without "name") mounted in every
        sandbox at c.ProfileSpawner.dataset_cache_dir (DSDATA_CACHE_DIR). Use a
        ReadWriteMany claim (NFS, CephFS, ...) so all sandboxes share one cache.

            c.ProfileKubeSpawner.dataset_cache_volume = {
                "persistentVolumeClaim": {"claimName": "dsdata-cache"}}
            c.ProfileKubeSpawner.dataset_cache_dir = "/srv/dsdata-cache"
        """,
    ).tag(config=True)

    fail_fast_on = List(
        Unicode(),
        list(FAIL_FAST_REASONS),
        help=f"""Pod states that end a spawn at once instead of after start_timeout, with the
        cluster's reason in the spawn progress and the error: {", ".join(FAIL_FAST_REASONS)}.
        On a cluster with an autoscaler, where an unschedulable pod may get a new node,
        leave out "Unschedulable".

            c.ProfileKubeSpawner.fail_fast_on = ["ErrImagePull", "ImagePullBackOff",
                                                 "InvalidImageName"]
        """,
    ).tag(config=True)

    _configured: dict[str, Any] | None = None
    _waiting_for_pod = False

    def apply_grant(self, grant: Grant, request: Request) -> None:
        super().apply_grant(grant, request)
        if self._configured is None:  # the admin's values, before the first grant
            self._configured = {k: copy.deepcopy(getattr(self, k)) for k in MERGED_TRAITS}
        settings = pod_settings(
            grant,
            request,
            gpu_resource=self.gpu_resource_name,
            gpu_scheduling=self.gpu_scheduling,
            workspace_path=self.workspace_path,
            cache_volume=self.dataset_cache_volume,
            cache_path=self.dataset_cache_dir,
            base=self._configured,
            job=self._job is not None,
        )
        # a spawner object serves every start of its server: whatever an earlier grant or
        # profile set and this one does not (GPUs, a disk, an override) goes back to the
        # admin's value
        for key in settings:
            if key not in self._configured:
                self._configured[key] = copy.deepcopy(getattr(self, key))
        for key, configured in self._configured.items():
            setattr(self, key, copy.deepcopy(settings.get(key, configured)))
        if self._job is not None:  # a notebook job (one per server name): runs once, to its end
            # in the workspace of the user's default server, where the notebook is
            self.pvc_name = self.workspace_claim()
            self.cmd = ["python", "-m", "server_ext.job_runner"]
            pod_config: dict[str, Any] = dict(getattr(self, "extra_pod_config", {}) or {})
            self.extra_pod_config = {**pod_config, "restartPolicy": "Never"}

    def workspace_claim(self) -> str:
        """The claim of the user's default server (``pvc_name_template`` expanded as for
        a server without a name): the workspace that notebook jobs run in."""
        template = self.pvc_name_template
        for field, default_server in DEFAULT_SERVER_FIELDS.items():
            template = template.replace(field, default_server)
        return str(self._expand_user_properties(template))

    def worker_identity(self) -> dict[str, Any]:
        """The user's Dask schedulers and workers run as pods like their sandboxes: the
        namespace, the profile's image, the sandbox user, GPU scheduling, the admin's
        node selector, tolerations and common labels (see :mod:`hub_ext.dask.kube_pods`)."""
        base = self._configured or {}
        profiles = self.policy.profiles
        identity = KubeIdentity(
            namespace=self.namespace,
            images={
                p.slug: p.toolchain.image for p in profiles if p.toolchain and p.toolchain.image
            },
            image=self.image,
            uid=int(self.uid) if isinstance(self.uid, int) else 1000,
            gid=int(self.gid) if isinstance(self.gid, int) else None,
            fs_gid=int(self.fs_gid) if isinstance(self.fs_gid, int) else None,
            image_pull_policy=self.image_pull_policy,
            image_pull_secrets=[
                s if isinstance(s, str) else s.get("name", "")
                for s in (self.image_pull_secrets or [])
            ],
            gpu_resource=self.gpu_resource_name,
            gpu_scheduling=self.gpu_scheduling,
            node_selector=dict(base.get("node_selector", self.node_selector) or {}),
            tolerations=list(base.get("tolerations", self.tolerations) or []),
            labels={k: str(v) for k, v in (self.common_labels or {}).items()},
        )
        return {"kube": identity.to_json(), "python": {p.slug: "python" for p in profiles}}

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.workspace_path:
            env["DSPLATFORM_WORKSPACE"] = self.workspace_path
        return env

    async def before_launch(self) -> None:
        """Add the dataset preload init container (needs the server's token in its env)."""
        request = self._request
        existing: list[Any] = list(getattr(self, "init_containers", []))
        others = [
            c for c in existing if not (isinstance(c, dict) and c.get("name") == "dsdata-preload")
        ]
        self.init_containers = others  # none left from an earlier start of this server
        if request is None or not request.profile.datasets:
            return
        preload = preload_init_container(
            image=self.image,
            datasets=request.profile.datasets,
            env=self.get_env(),
            volume_mounts=self._sorted_dict_values(self._expand_all(self.volume_mounts)),
            working_dir=self.working_dir or self.workspace_path or None,
            security_context=self.preload_security_context(),
        )
        # KubeSpawner expands {placeholders} in init containers: keep our values literal
        preload = _escape_braces(preload)
        self.init_containers = [*others, preload]

    def preload_security_context(self) -> dict[str, Any]:
        """The notebook container's security context, for the preload init container."""
        context: dict[str, Any] = {}
        if self.uid is not None:
            context["runAsUser"] = int(self.uid)
        if self.gid is not None:
            context["runAsGroup"] = int(self.gid)
        csc = self.container_security_context
        return {**context, **(csc if isinstance(csc, dict) else {})}

    @default("uid")
    def _uid_default(self) -> int:
        return 1000  # as z2jh: never the image's root

    @default("fs_gid")
    def _fs_gid_default(self) -> int:
        return 100  # the users group of the Jupyter images: the workspace is writable

    async def delete_forever(self) -> None:
        """A job server's removal (after every job) never deletes a claim: its workspace is
        the default server's (KubeSpawner would delete ``pvc_name`` with ``delete_pvc``)."""
        if self.name.startswith(JOB_SERVER_PREFIX):
            self.log.info("dsplatform: deleting no claim for %s's job server %s: its workspace "
                          "is the default server's", self.user.name, self.name)  # fmt: skip
            return
        await super().delete_forever()

    # --- fail fast ------------------------------------------------------------------------
    async def _start(self) -> Any:
        self._waiting_for_pod = True
        try:
            return await super()._start()
        finally:
            self._waiting_for_pod = False

    async def stop(self, now: bool = False) -> None:
        if self._waiting_for_pod:
            # KubeSpawner's _start deleting a leftover pod that holds this server's name
            # (409 on create) before it creates ours: the new server keeps its reservation
            await KubeSpawner.stop(self, now=now)
            return
        await super().stop(now=now)

    def is_pod_running(self, pod: dict[str, Any] | None) -> bool:
        """KubeSpawner polls this while it waits for the pod: a pod that cannot start
        ends the spawn here (the hub then deletes the pod; the reservation is released)."""
        if self._waiting_for_pod:
            failure = start_failure(pod, self.fail_fast_on)
            if failure is not None:
                self.log.warning("dsplatform: %s cannot start: %s", self._log_name, failure.message)
                raise SpawnRefusal(
                    failure.message, reason=failure.label, status_code=failure.status_code
                )
        running: bool = super().is_pod_running(pod)
        return running

    # KubeSpawner's own profile_list machinery is replaced by dsplatform's profiles.
    async def load_user_options(self) -> None:
        return None
