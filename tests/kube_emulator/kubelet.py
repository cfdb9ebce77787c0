"""The emulator's kubelet: one :class:`PodRunner` per bound pod runs its containers as local
processes and reports their states the way a kubelet does.

A container is ``command + args`` run in the hub's Python environment (the image is not
pulled: its name only decides whether a "pull" fails), in its own process group, with the
pod's environment. The pod's network namespace is its own loopback address: ``0.0.0.0`` in
args and env values becomes the pod IP, so ``jupyterhub-singleuser`` (which binds to the
host of ``JUPYTERHUB_SERVICE_URL``) listens on ``127.x.y.N:8888``. Volumes are directories
(a PVC's outlives the pod; emptyDir, secret and configMap ones live with the pod; hostPath
is the host path); a path under a mount in ``workingDir``, env values or args, and the
image's home, become the directory behind it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import os
import re
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .store import now

if TYPE_CHECKING:
    from .cluster import Cluster

# a docker reference: lowercase repository path, optional :tag and @digest
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_VAR_REF = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
LOG_TAIL_BYTES = 2048


@dataclass
class Image:
    """What the emulator pretends every image contains."""

    home: str = "/home/jovyan"
    workdir: str = "/home/jovyan"
    bin_dir: str = ""  # prepended to PATH: the hub's environment


def image_problem(image: str, unpullable: Sequence[str]) -> tuple[str, str] | None:
    """(waiting reason, message) if the image cannot be pulled, else None."""
    if not _IMAGE_RE.match(image):
        return "InvalidImageName", (
            f'Failed to apply default image tag "{image}": couldn\'t parse image name '
            f'"{image}": invalid reference format'
        )
    ref = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
    host = ref.split("/")[0]
    if host.endswith(".invalid"):
        return "ErrImagePull", (
            f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
            f"failed to do request: dial tcp: lookup {host}: no such host"
        )
    if any(fnmatch.fnmatchcase(image, p) or fnmatch.fnmatchcase(ref, p) for p in unpullable):
        return "ErrImagePull", (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
            f'failed to resolve reference "{ref}": {ref}: not found'
        )
    return None


def map_path(path: str, mounts: Sequence[tuple[str, Path]], rootfs: Path) -> Path:
    """A path inside the container -> the host directory behind it (longest mount wins)."""
    clean = "/" + path.strip("/")
    for mount_path, host in sorted(mounts, key=lambda m: -len(m[0])):
        mp = "/" + mount_path.strip("/")
        if clean == mp or clean.startswith(mp.rstrip("/") + "/"):
            return host / clean[len(mp) :].lstrip("/")
    return rootfs / clean.lstrip("/")


def rewrite(
    value: str, ip: str, mounts: Sequence[tuple[str, Path]], rootfs: Path, home: str
) -> str:
    """An env value or argument as the process on this host needs it."""
    value = value.replace("0.0.0.0", ip)
    prefix, eq, rest = value.partition("=") if value.startswith("--") else ("", "", value)
    roots = ["/" + m.strip("/") for m, _ in mounts] + ["/" + home.strip("/")]
    if rest.startswith("/") and any(
        rest == r or rest.startswith(r.rstrip("/") + "/") for r in roots
    ):
        rest = str(map_path(rest, mounts, rootfs))
    return f"{prefix}{eq}{rest}"


class ConfigMissing(Exception):
    """A secret or config map an env entry needs does not exist (CreateContainerConfigError)."""


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: Callable[[str, str], Mapping[str, str] | None],
) -> dict[str, str]:
    """The container's env entries resolved (value, $(VAR) references, fieldRef, secret and
    config map keys, envFrom). ``lookup(kind, name)`` returns a secret's or config map's
    data (decoded) or None."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for kind in ("secretRef", "configMapRef"):
            ref = source.get(kind)
            if ref:
                data = lookup(kind, ref.get("name", ""))
                if data is None and not ref.get("optional"):
                    raise ConfigMissing(
                        f'{kind[:-3].replace("configMap", "configmap")} "{ref.get("name")}" not found'
                    )
                env.update({source.get("prefix", "") + k: v for k, v in (data or {}).items()})
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry or "valueFrom" not in entry:
            value = entry.get("value") or ""
            env[name] = _VAR_REF.sub(lambda m: env.get(m[1], m[0]), value)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            labels = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
            env[name] = (
                meta.get(labels[1], {}).get(labels[2], "") if labels else fields.get(path, "")
            )
        for kind in ("secretKeyRef", "configMapKeyRef"):
            ref = source.get(kind)
            if ref:
                data = lookup(kind.replace("KeyRef", "Ref"), ref.get("name", ""))
                if (data is None or ref.get("key") not in data) and not ref.get("optional"):
                    what = "secret" if kind == "secretKeyRef" else "configmap"
                    raise ConfigMissing(
                        f"couldn't find key {ref.get('key')} in {what} {meta.get('namespace')}/{ref.get('name')}"
                    )
                env[name] = (data or {}).get(ref.get("key", ""), "")
    return env


@dataclass
class ContainerState:
    name: str
    image: str
    init: bool
    restart_count: int = 0
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "PodInitializing"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"emulated://{self.image}" if self.container_id else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


class PodRunner:
    """Runs one bound pod: init containers in order, then all containers, with restarts."""

    def __init__(
        self, cluster: Cluster, pod: Mapping[str, Any], ip: str, devices: list[str]
    ) -> None:
        self.cluster = cluster
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.ip = ip
        self.devices = list(devices)
        self.dir = cluster.config.state_dir / "pods" / self.ns / f"{self.name}-{self.uid[:8]}"
        spec = pod["spec"]
        self.states = {
            c["name"]: ContainerState(c["name"], c.get("image", ""), init)
            for init, group in ((True, "initContainers"), (False, "containers"))
            for c in spec.get(group) or []
        }
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.task: asyncio.Task[None] | None = None

    def lookup(self, kind: str, name: str) -> Mapping[str, str] | None:
        return self.cluster.lookup(kind, name, self.ns)

    # --- status -------------------------------------------------------------------------
    @property
    def pod(self) -> dict[str, Any] | None:
        return self.cluster.store.get("pods", self.ns, self.name)

    def publish(self, **status: Any) -> None:
        pod = self.pod
        if pod is None or pod["metadata"]["uid"] != self.uid:
            return
        st = pod.setdefault("status", {})
        st.update(status)
        spec = pod["spec"]
        st["initContainerStatuses"] = [
            self.states[c["name"]].status() for c in spec.get("initContainers") or []
        ]
        st["containerStatuses"] = [
            self.states[c["name"]].status() for c in spec.get("containers") or []
        ]
        if not st["initContainerStatuses"]:
            del st["initContainerStatuses"]
        mains = [self.states[c["name"]] for c in spec.get("containers") or []]
        ready = all(s.ready for s in mains)
        set_condition(st, "ContainersReady", ready, "" if ready else "ContainersNotReady")
        set_condition(st, "Ready", ready, "" if ready else "ContainersNotReady")
        if any(s.started for s in mains) and st.get("phase") == "Pending":
            st["phase"] = "Running"
        self.cluster.store.modify("pods", pod)

    def event(self, reason: str, message: str, kind: str = "Normal", container: str = "") -> None:
        pod = self.pod
        if pod is not None:
            where = ""
            if container:
                group = "initContainers" if self.states[container].init else "containers"
                where = f"spec.{group}{{{container}}}"
            self.cluster.record_event(pod, reason, message, kind, "kubelet", where)

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        spec = (self.pod or {}).get("spec", {})
        inits = spec.get("initContainers") or []
        st: dict[str, Any] = {
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": self.cluster.host_ip,
            "hostIPs": [{"ip": self.cluster.host_ip}],
            "startTime": now(),
        }
        pod = self.pod
        if pod is None:
            return
        status = pod.setdefault("status", {})
        set_condition(status, "PodReadyToStartContainers", True)
        set_condition(
            status, "Initialized", not inits, "" if not inits else "ContainersNotInitialized"
        )
        self.publish(**st)
        for container in inits:
            while True:
                code = await self.run_once(container)
                if code == 0:
                    break
                if spec.get("restartPolicy") == "Never":
                    self.publish(phase="Failed")
                    return
                await self.back_off(container)
        if inits:
            pod = self.pod
            if pod is None:
                return
            set_condition(pod["status"], "Initialized", True)
            self.publish()
        codes = await asyncio.gather(
            *(self.keep_running(c, spec) for c in spec.get("containers") or [])
        )
        self.publish(phase="Succeeded" if not any(codes) else "Failed")

    async def keep_running(self, container: Mapping[str, Any], spec: Mapping[str, Any]) -> int:
        policy = spec.get("restartPolicy", "Always")
        while True:
            code = await self.run_once(container)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return code
            await self.back_off(container)

    async def back_off(self, container: Mapping[str, Any]) -> None:
        s = self.states[container["name"]]
        delay = min(self.cluster.config.restart_backoff * 2**s.restart_count, 300)
        s.last_state, s.restart_count = s.state, s.restart_count + 1
        s.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={s.name} pod={self.name}_{self.ns}({self.uid})",
            }
        }
        self.publish()
        self.event(
            "BackOff",
            f"Back-off restarting failed container {s.name} in pod {self.name}_{self.ns}({self.uid})",
            "Warning",
            s.name,
        )
        await asyncio.sleep(delay)

    async def pull(self, container: Mapping[str, Any]) -> None:
        """Return once the image is "pulled"; loop in ErrImagePull/ImagePullBackOff if not."""
        s, image = self.states[container["name"]], container.get("image", "")
        problem = image_problem(image, self.cluster.config.unpullable)
        attempt = 0
        while problem is not None:
            reason, message = problem
            if reason == "ErrImagePull":
                self.event("Pulling", f'Pulling image "{image}"', container=s.name)
                self.event(
                    "Failed", f'Failed to pull image "{image}": {message}', "Warning", s.name
                )
            s.state = {"waiting": {"reason": reason, "message": message}}
            self.publish()
            self.event("Failed", f"Error: {reason}", "Warning", s.name)
            delay = min(self.cluster.config.pull_backoff * 2**attempt, 300)
            await asyncio.sleep(delay)
            if reason == "ErrImagePull":
                s.state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image}"',
                    }
                }
                self.publish()
                self.event("BackOff", f'Back-off pulling image "{image}"', container=s.name)
                self.event("Failed", "Error: ImagePullBackOff", "Warning", s.name)
                await asyncio.sleep(delay)
            attempt += 1
        if container.get("imagePullPolicy") == "Always":
            self.event("Pulling", f'Pulling image "{image}"', container=s.name)
            self.event(
                "Pulled",
                f'Successfully pulled image "{image}" in 0s (0s including waiting)',
                container=s.name,
            )
        else:
            self.event(
                "Pulled", f'Container image "{image}" already present on machine', container=s.name
            )

    def volumes(self, spec: Mapping[str, Any]) -> dict[str, Path]:
        """Each volume's directory on this host (created, secrets/config maps written)."""
        dirs: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.cluster.config.state_dir / "volumes" / self.ns / claim
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            else:
                path = self.dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            for kind, key in (("secret", "secretName"), ("configMap", "name")):
                if kind in volume:
                    data = self.lookup(kind + "Ref", volume[kind].get(key, "")) or {}
                    for item, text in data.items():
                        (path / item).write_text(text)
            dirs[name] = path
        return dirs

    async def run_once(self, container: Mapping[str, Any]) -> int:
        """Pull, start and wait for one run of ``container``; its exit code."""
        s = self.states[container["name"]]
        await self.pull(container)
        pod = self.pod
        if pod is None:
            raise asyncio.CancelledError
        spec, image = pod["spec"], self.cluster.config.image
        volumes = self.volumes(spec)
        mounts = [
            (m["mountPath"], volumes[m["name"]] / m.get("subPath", ""))
            for m in container.get("volumeMounts") or []
        ]
        rootfs = self.dir / "rootfs" / s.name
        try:
            declared = container_env(pod, container, self.lookup)
        except ConfigMissing as e:
            s.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            self.publish()
            self.event("Failed", f"Error: {e}", "Warning", s.name)
            await asyncio.sleep(self.cluster.config.restart_backoff)
            return await self.run_once(container)
        # the image's env (HOME a path in the container), then the container's own entries
        declared = {"HOME": image.home, **declared}
        env = {k: rewrite(v, self.ip, mounts, rootfs, image.home) for k, v in declared.items()}
        env.setdefault(  # the emulator's: host paths, never rewritten
            "PATH",
            os.pathsep.join(p for p in (image.bin_dir, "/usr/local/bin", "/usr/bin", "/bin") if p),
        )
        env.setdefault("HOSTNAME", self.name)
        gpus = [
            k
            for k in ((container.get("resources") or {}).get("limits") or {})
            if k.endswith("/gpu")
        ]
        if gpus and self.devices:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(self.devices)
        argv = [
            rewrite(a, self.ip, mounts, rootfs, image.home)
            for a in [*(container.get("command") or []), *(container.get("args") or [])]
        ]
        cwd = map_path(container.get("workingDir") or image.workdir, mounts, rootfs)
        for path in (cwd, map_path(image.home, mounts, rootfs)):
            path.mkdir(parents=True, exist_ok=True)
        executable = shutil.which(argv[0], path=env["PATH"]) if argv else None
        if executable is None:
            why = (
                f'exec: "{argv[0]}": executable file not found in $PATH'
                if argv
                else "the emulator runs no image entrypoint: give the container a command or args"
            )
            s.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": f"failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: {why}: unknown",
                    "startedAt": now(),
                    "finishedAt": now(),
                }
            }
            s.ready = False
            self.publish()
            self.event(
                "Failed", f"Error: failed to create containerd task: {why}", "Warning", s.name
            )
            return 128
        log_path = self.dir / "logs" / f"{s.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            offset = log.tell()
            self.event("Created", f"Created container: {s.name}", container=s.name)
            proc = await asyncio.create_subprocess_exec(
                executable,
                *argv[1:],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[s.name] = proc
        s.container_id = f"emulated://{self.uid[:8]}-{s.name}-{proc.pid}"
        started = now()
        s.state, s.started, s.ready = {"running": {"startedAt": started}}, True, not s.init
        self.publish()
        self.event("Started", f"Started container {s.name}", container=s.name)
        code = await proc.wait()
        self.procs.pop(s.name, None)
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
        message = ""
        if code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with open(log_path, "rb") as f:
                f.seek(max(offset, log_path.stat().st_size - LOG_TAIL_BYTES))
                message = f.read().decode(errors="replace")
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started,
            "finishedAt": now(),
            "containerID": s.container_id,
        }
        if message:
            terminated["message"] = message
        s.state, s.ready = {"terminated": terminated}, False
        self.publish()
        return code

    async def stop(self, grace: float) -> None:
        """Terminate every process group (SIGTERM, then SIGKILL after ``grace`` s)."""
        if self.task is not None:
            self.task.cancel()
        for name, proc in list(self.procs.items()):
            self.event("Killing", f"Stopping container {name}", container=name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                await asyncio.wait_for(proc.wait(), timeout=max(grace, 0.1))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def set_condition(
    status: dict[str, Any], kind: str, ok: bool, reason: str = "", message: str = ""
) -> None:
    conditions = status.setdefault("conditions", [])
    value = "True" if ok else "False"
    for c in conditions:
        if c["type"] == kind:
            if c["status"] != value:
                c["lastTransitionTime"] = now()
            c["status"] = value
            _reason(c, reason, message)
            return
    c = {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": now()}
    _reason(c, reason, message)
    conditions.append(c)


def _reason(condition: dict[str, Any], reason: str, message: str) -> None:
    for key, value in (("reason", reason), ("message", message)):
        if value:
            condition[key] = value
        else:
            condition.pop(key, None)


def decode_secret(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
