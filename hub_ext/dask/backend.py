"""dask-gateway's backend on the governed pool (runs in the ``dask-gateway`` service process).

dask-gateway-server's :class:`LocalBackend` with four changes:

* **Cluster options from the user's profiles**: ``profile``, ``worker_cores``,
  ``worker_memory``, ``worker_gpus`` (defaults: the user's default profile), checked by the
  hub when the cluster is created (an invalid or forbidden choice is refused at once).
* **Every worker admitted by the hub** (``POST /hub/api/dsplatform/workers``, grant kind
  ``worker``) before it starts, and its grant given back when it stops; an explicit scale
  that does not fit scales to what does and answers with the hub's refusal and its numbers
  (``GatewayClusterError`` in the client); an adaptive cluster simply gets no more workers
  until there is room.
* **As the user's account**: schedulers and workers run as the sandbox's account with the
  workspace as ``HOME``; each worker in its own cgroup (its grant's CPU and memory, the
  sandbox's device rules with only its GPUs, ``CUDA_VISIBLE_DEVICES``).
* **The hub's view at start**: the grants of workers this gateway does not run (it was
  restarted) are given back.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
from typing import Any
from urllib.parse import quote

import aiohttp
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.local import LocalBackend, LocalClusterConfig
from dask_gateway_server.options import Float, Integer, Options, Select, String
from dask_gateway_server.traitlets import Type
from dask_gateway_server.utils import timestamp
from traitlets import Bool, Dict, Int, List, Unicode, default
from traitlets import Float as TFloat

from hub_ext.admission.units import format_bytes, parse_bytes
from hub_ext.spawners import os_limits
from hub_ext.spawners.accounts import Account, drop_privileges
from hub_ext.spawners.devices import sandbox_rules


class PlatformClusterConfig(LocalClusterConfig):
    """A cluster's settings, from the hub (who runs it and how each worker is admitted)."""

    worker_cores = TFloat(1.0, help="CPUs per worker (fractions, as in profiles)", config=True)
    hub_options = Dict(help="What each worker is admitted with: profile, cpu, memory, gpus.")
    account = Unicode("", help="The user's account ('' when the gateway is not root).")
    workspace = Unicode("", help="The user's workspace (HOME of schedulers and workers).")
    enforce_limits = Bool(True, help="One cgroup per worker with its grant's limits.")
    cgroup_root = Unicode("/sys/fs/cgroup")
    max_tasks = Int(1024, help="Processes and threads per worker.")
    gpu_device_node = Unicode("/dev/nvidia{id}")
    gpu_control_nodes = List(Unicode())
    kube = Dict(help="Beside dsplatform-kube: how the user's pods run (kube_pods.KubeIdentity).")


# what the hub says about running a user's processes (GET …/workers/options "identity")
IDENTITY_KEYS = ("account", "workspace", "enforce_limits", "cgroup_root", "max_tasks",
                 "gpu_device_node", "gpu_control_nodes", "kube")  # fmt: skip


class HubError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def options_for(data: dict[str, Any]) -> Options:
    """The cluster options a user may choose, from the hub's answer for them (pure)."""
    profiles = {p["slug"]: p for p in data["profiles"]}
    if not profiles:
        raise PublicException("No profile of yours may run Dask workers")
    default = data.get("default") or next(iter(profiles))
    first = profiles[default]
    identity = data.get("identity", {})

    def cpu(p: dict[str, Any], key: str) -> float:
        return float(p["cpu"][key])

    def gpus(p: dict[str, Any], key: str) -> int:
        return int(p["gpus"][key]) if p.get("gpus") else 0

    def handler(options: Any) -> dict[str, Any]:
        try:
            memory = parse_bytes(options.worker_memory)
        except ValueError as e:
            raise ValueError(f"worker_memory: {e}") from None
        python = identity.get("python", {}).get(options.profile) or sys.executable
        hub_options = {"profile": options.profile, "cpu": options.worker_cores,
                       "memory": format_bytes(memory), "gpus": options.worker_gpus}  # fmt: skip
        return {
            "hub_options": hub_options,
            "worker_cores": options.worker_cores,
            "worker_memory": memory,
            "worker_threads": max(1, math.floor(options.worker_cores)),
            "scheduler_cmd": [python, "-m", "distributed.cli.dask_scheduler"],
            "worker_cmd": [python, "-m", "distributed.cli.dask_worker"],
            **{k: identity[k] for k in IDENTITY_KEYS if k in identity},
        }

    return Options(
        Select("profile", list(profiles), default=default, label="Profile (its ranges apply)"),
        Float("worker_cores", default=cpu(first, "default"),
              min=min(cpu(p, "min") for p in profiles.values()),
              max=max(cpu(p, "max") for p in profiles.values()), label="CPUs per worker"),
        String("worker_memory", default=first["memory"]["default"],
               label="Memory per worker (e.g. 2G)"),
        Integer("worker_gpus", default=0, min=0,
                max=max(gpus(p, "max") for p in profiles.values()), label="GPUs per worker"),
        handler=handler,
    )  # fmt: skip


async def _release_limits(state: dict[str, Any] | None) -> None:
    """Remove the cgroup recorded in a scheduler's or worker's state (its stray processes
    go with it)."""
    limits = (state or {}).get("limits")
    if limits:
        await asyncio.to_thread(os_limits.release, os_limits.LimitPlan.from_state(limits))


class PlatformBackend(LocalBackend):
    """Local processes as the user's account, every worker admitted by the hub's ledger."""

    cluster_config_class = Type(
        "hub_ext.dask.backend.PlatformClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class (who runs the cluster, how workers are admitted)",
        config=True,
    )

    hub_api_url = Unicode(help="The hub's API (default: $JUPYTERHUB_API_URL).").tag(config=True)
    hub_api_token = Unicode(help="The service's hub token (default: $JUPYTERHUB_API_TOKEN).")

    @default("hub_api_url")
    def _hub_api_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    @default("hub_api_token")
    def _hub_api_token_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("cluster_options")
    def _cluster_options_default(self) -> Any:
        return self.options_of

    _hub_session: aiohttp.ClientSession | None = None

    # --- the hub --------------------------------------------------------------------------
    async def hub(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/hub/api/dsplatform/workers{path}``; the JSON answer, or HubError."""
        if self._hub_session is None:
            self._hub_session = aiohttp.ClientSession(
                headers={"Authorization": f"token {self.hub_api_token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            )
        url = f"{self.hub_api_url.rstrip('/')}/dsplatform/workers{path}"
        async with self._hub_session.request(method, url, json=body) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    message = (await resp.json(content_type=None)).get("message", text)
                except ValueError:
                    message = text
                raise HubError(resp.status, message)
            return await resp.json(content_type=None) if text else None

    async def options_of(self, user: Any) -> Options:
        try:
            data = await self.hub("GET", f"/options?user={quote(user.name)}")
        except HubError as e:
            raise PublicException(e.message) from None
        return options_for(data)

    async def setup(self, app: Any) -> None:
        await super().setup(app)
        live = [
            w.state["grant"]["id"]
            for c in self.db.active_clusters()
            for w in c.workers.values()
            if w.is_active() and w.state and w.state.get("grant")
        ] + [
            c.state["scheduler_grant"]["id"]
            for c in self.db.active_clusters()
            if c.state and c.state.get("scheduler_grant")
        ]
        try:
            released = await self.hub("PUT", "", {"live": live})
            if released and released.get("released"):
                self.log.info("Gave back %d grants of workers that no longer run",
                              len(released["released"]))  # fmt: skip
        except (TimeoutError, HubError, aiohttp.ClientError) as e:
            self.log.warning("Could not reconcile workers' grants with the hub: %s", e)

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._hub_session is not None:
            await self._hub_session.close()

    # --- creation: the hub checks the options ---------------------------------------------
    async def start_cluster(self, user: Any, cluster_options: Any) -> str:
        """Create a cluster whose scheduler the hub admitted (its grant, the cluster's first),
        or refuse at once: invalid options, a profile of other groups, over quota."""
        options, config = await self.process_cluster_options(user, cluster_options)
        self.check_runnable(user, config)
        cluster = self.db.create_cluster(user.name, options, config.to_dict())
        try:
            grant = await self.hub("POST", "", {"user": user.name, "cluster": cluster.name,
                                                "options": config.hub_options,
                                                "scheduler": True})  # fmt: skip
        except HubError as e:
            self.db.update_cluster(cluster, status=JobStatus.FAILED, target=JobStatus.FAILED,
                                   stop_time=timestamp())  # fmt: skip
            raise PublicException(f"New cluster refused: {e.message}") from None
        self.db.update_cluster(cluster, state={"scheduler_grant": grant})
        self.log.info("Created cluster %s for user %s (scheduler grant %s)", cluster.name,
                      user.name, grant["id"])  # fmt: skip
        self.queue.put(cluster)
        return str(cluster.name)

    def check_runnable(self, user: Any, config: Any) -> None:
        """Can the cluster's processes run (PublicException if not)."""
        if os.geteuid() == 0 and not (config.account and Account.lookup(config.account)):
            raise PublicException(f"{user.name} has no sandbox account yet: start a server first")

    async def do_start_cluster(self, cluster: Any) -> Any:
        """The scheduler as the account, in a cgroup of its grant."""
        grant = dict(cluster.state.get("scheduler_grant") or {})
        if not grant:
            raise RuntimeError(f"cluster {cluster.name} has no scheduler grant from the hub")
        workdir = self.setup_working_directory(cluster)
        yield {"scheduler_grant": grant, "workdir": workdir}
        plan = await asyncio.to_thread(self._limits, cluster, "scheduler", grant)
        limits = plan.to_state() if plan else None
        state = {"scheduler_grant": grant, "workdir": workdir, "limits": limits}
        yield state
        env = self.get_scheduler_env(cluster)
        pid = await self._launch(cluster, self.get_scheduler_command(cluster), env,
                                 "scheduler", plan)  # fmt: skip
        yield {**state, "pid": pid}

    async def do_stop_cluster(self, cluster: Any) -> None:
        await super().do_stop_cluster(cluster)
        await _release_limits(cluster.state)

    # --- scale: admitted worker by worker ---------------------------------------------------
    async def forward_message_to_scheduler(self, cluster: Any, msg: dict[str, Any]) -> None:
        if msg.get("op") != "scale":
            return await super().forward_message_to_scheduler(cluster, msg)
        held = self.db.get_cluster(cluster.name)  # the route passes the public model
        have = len(held.active_workers()) if held is not None else 0
        want = int(msg["count"])
        if held is None or want <= have:
            return await super().forward_message_to_scheduler(cluster, msg)
        try:
            answer = await self.hub("POST", "/check", {
                "user": held.username, "count": want - have,
                "options": held.config.get("hub_options", {}),
            })  # fmt: skip
        except HubError as e:
            raise PublicException(e.message) from None
        if answer["fits"] >= want - have:
            return await super().forward_message_to_scheduler(cluster, msg)
        count = have + answer["fits"]
        await super().forward_message_to_scheduler(cluster, {**msg, "count": count})
        raise PublicException(
            f"Scaling to {want} workers refused: {answer['message']} "
            f"(the cluster keeps {count} workers)"
        )

    async def _check_cluster_scale(self, cluster: Any) -> None:
        if cluster.worker_start_failure_count >= self.worker_start_failure_limit:
            return await super()._check_cluster_scale(cluster)
        missing = cluster.count - len(cluster.active_workers())
        for _ in range(max(0, missing)):
            try:
                grant = await self.hub("POST", "", {
                    "user": cluster.username, "cluster": cluster.name,
                    "options": cluster.config.get("hub_options", {}),
                })  # fmt: skip
            except HubError as e:
                count = len(cluster.active_workers())
                self.log.info("Worker of cluster %s refused (%d): %s; %d workers",
                              cluster.name, e.status, e.message, count)  # fmt: skip
                self.db.update_cluster(cluster, count=count)
                return
            worker = self.db.create_worker(cluster)
            self.db.update_worker(worker, state={"grant": grant})
            self.log.info("Created worker %s for cluster %s (grant %s, devices %s)",
                          worker.name, cluster.name, grant["id"],
                          ",".join(grant["devices"]) or "-")  # fmt: skip
            self.queue.put(worker)

    # --- processes as the user's account ----------------------------------------------------
    def _account(self, cluster: Any) -> Account | None:
        name = cluster.config.get("account", "")
        if not name or os.geteuid() != 0:
            return None
        account = Account.lookup(name)
        if account is None:
            raise RuntimeError(f"the account {name} of {cluster.username} does not exist")
        return account

    def setup_working_directory(self, cluster: Any) -> str:
        """The cluster's directory (its TLS credentials, its logs), the account's alone.

        Not LocalBackend's: dask-gateway-server 2026.3 adds the key's path to the list of
        paths to chown character by character (``paths.extend(path)``), which gives ``/``
        to the user when the gateway runs as root.
        """
        account = self._account(cluster)
        workdir = os.path.join(self.clusters_directory or tempfile.gettempdir(), cluster.name)
        certs, logs = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        for path in (workdir, certs, logs):
            os.mkdir(path, 0o700)
            if account is not None:
                os.chown(path, account.uid, account.gid)
        cert_path, key_path = self._get_tls_paths(workdir)
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                if account is not None:
                    os.fchown(out.fileno(), account.uid, account.gid)
                out.write(data)
        return workdir

    def get_env(self, cluster: Any) -> dict[str, str]:
        env: dict[str, str] = super().get_env(cluster)
        workdir = cluster.state["workdir"]
        if cluster.config.get("account"):
            env["USER"] = env["LOGNAME"] = cluster.config["account"]
        if cluster.config.get("workspace"):
            env["HOME"] = cluster.config["workspace"]
        env["TMPDIR"] = env["DASK_TEMPORARY_DIRECTORY"] = workdir  # private to the account
        return env

    def make_preexec_fn(self, cluster: Any, plan: os_limits.LimitPlan | None = None) -> Any:
        account = self._account(cluster)
        workdir = cluster.state["workdir"]

        def preexec() -> None:  # pragma: no cover (in the child)
            if plan is not None:
                os_limits.apply_in_child(plan)  # as root: join the worker's cgroups
            if account is not None:
                drop_privileges(account)
            os.umask(0o077)
            os.chdir(workdir)

        return preexec

    def _limits(self, cluster: Any, part: str,
                grant: dict[str, Any]) -> os_limits.LimitPlan | None:  # fmt: skip
        """The cgroup of one process of ``cluster`` (its scheduler or a worker), sized by
        its grant, with the sandbox's device rules and only its GPUs; created."""
        config = cluster.config
        if not config.get("enforce_limits", True) or os.geteuid() != 0:
            return None
        devices = sandbox_rules(grant["devices"], config.get("gpu_device_node", "/dev/nvidia{id}"),
                                config.get("gpu_control_nodes", []))  # fmt: skip
        limits = os_limits.Limits(int(grant["memory"]), float(grant["cpu"]),
                                  int(config.get("max_tasks", 1024)), devices)  # fmt: skip
        name = f"{config.get('account') or cluster.username}-dask-{part[:12]}"
        plan = os_limits.plan_limits(
            limits, name=name,
            hierarchy=os_limits.detect(config.get("cgroup_root", "/sys/fs/cgroup")),
            available=sorted(os.sched_getaffinity(0)),
        )  # fmt: skip
        os_limits.prepare(plan)
        return plan

    async def _launch(self, cluster: Any, cmd: list[str], env: dict[str, str], name: str,
                      plan: os_limits.LimitPlan | None) -> int:  # fmt: skip
        """Fork ``cmd`` into ``plan``'s cgroup as the account; its output in the cluster's
        logs (the account's)."""
        log_path = os.path.join(self.get_logs_directory(cluster.state["workdir"]), f"{name}.log")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            account = self._account(cluster)
            if account is not None:
                os.fchown(fd, account.uid, account.gid)
            proc = await asyncio.create_subprocess_exec(
                *cmd, preexec_fn=self.make_preexec_fn(cluster, plan), start_new_session=True,
                env=env, stdout=fd, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        except BaseException:
            os_limits.release(plan)
            raise
        finally:
            os.close(fd)
        return proc.pid

    async def do_start_worker(self, worker: Any) -> Any:
        grant = dict(worker.state.get("grant") or {})
        if not grant:
            raise RuntimeError(f"worker {worker.name} has no grant from the hub")
        cluster = worker.cluster
        plan = await asyncio.to_thread(self._limits, cluster, worker.name, grant)
        env = self.get_worker_env(cluster)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(grant["devices"])
        env["DSPLATFORM_LIMITS"] = plan.method if plan else "none"
        env["DSPLATFORM_WORKER_GRANT"] = grant["id"]
        pid = await self._launch(cluster, self.get_worker_command(cluster, worker.name), env,
                                 f"worker-{worker.name}", plan)  # fmt: skip
        yield {"grant": grant, "pid": pid, "limits": plan.to_state() if plan else None}

    def worker_nthreads_memory_limit_args(self, cluster: Any) -> tuple[str, str]:
        return str(cluster.config.worker_threads), str(int(cluster.config.worker_memory))

    async def do_stop_worker(self, worker: Any) -> None:
        await super().do_stop_worker(worker)
        await _release_limits(worker.state)

    # --- stop: grants back ------------------------------------------------------------------
    async def _worker_to_stopped(self, worker: Any) -> None:
        await super()._worker_to_stopped(worker)
        await self._give_back(worker)

    async def _cluster_to_stopped(self, cluster: Any) -> None:
        await super()._cluster_to_stopped(cluster)
        try:  # the scheduler's grant and those of workers that never reached a stop
            await self.hub("DELETE", f"?cluster={cluster.name}")
        except (TimeoutError, HubError, aiohttp.ClientError) as e:
            self.log.warning("Could not give back cluster %s's grants: %s", cluster.name, e)

    async def _give_back(self, worker: Any) -> None:
        grant = (worker.state or {}).get("grant")
        if not grant:
            return
        try:
            await self.hub("DELETE", f"/{grant['id']}")
        except HubError as e:
            if e.status != 404:  # 404: given back already
                self.log.warning("Could not give back worker %s's grant: %s", worker.name, e)
        except (TimeoutError, aiohttp.ClientError) as e:
            self.log.warning("Could not give back worker %s's grant: %s", worker.name, e)
