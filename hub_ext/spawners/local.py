"""``dsplatform-local``: sandboxes as local processes on one (possibly multi-GPU) machine.

When the hub runs as root (the deployment case), every hub user's sandbox, its dataset
preload included, runs as that user's own unix account (:mod:`hub_ext.spawners.accounts`),
never as root, in a workspace only that account can enter, inside a cgroup that bounds the
whole sandbox (memory, CPU, tasks) and lets it open only its granted GPUs' device nodes
(:mod:`hub_ext.spawners.os_limits`). ``CUDA_VISIBLE_DEVICES`` names the same devices, as a
convenience. A hub that is not root (a laptop demo) runs sandboxes as itself, with
per-process rlimits, and says so loudly at start-up (:mod:`hub_ext.spawners.isolation`).

A toolchain's ``local_python`` selects the Python environment the sandbox runs in; without
one, the hub's own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Bool, Dict, Int, List, Tuple, Unicode, default

from hub_ext.admission.options import Request
from hub_ext.admission.reservations import Grant
from hub_ext.services.serving.settings import ModelServing
from hub_ext.spawners import os_limits
from hub_ext.spawners.accounts import (
    Account,
    AccountError,
    account_name,
    drop_privileges,
    ensure_account,
    prepare_workspace,
    private_dir,
)
from hub_ext.spawners.base import ProfileSpawner, SpawnRefusal
from hub_ext.spawners.devices import NVIDIA_CONTROL_NODES, sandbox_rules
from hub_ext.state import state_dir


def singleuser_command(local_python: str | None) -> list[str]:
    """The command that runs ``jupyterhub-singleuser`` in a toolchain's Python environment.

    ``local_python`` may be an interpreter (``/opt/envs/torch/bin/python``) or an
    environment prefix (``/opt/envs/torch``); None means the hub's own interpreter.
    """
    if not local_python:
        return [sys.executable, "-m", "jupyterhub.singleuser"]
    path = Path(local_python)
    python = path / "bin" / "python" if path.is_dir() else path
    return [str(python), "-m", "jupyterhub.singleuser"]


def isolating() -> bool:
    """Sandboxes get their own accounts and cgroups when the hub runs as root."""
    return os.geteuid() == 0


class LocalProfileSpawner(ProfileSpawner, SimpleLocalProcessSpawner):
    """Profile- and quota-governed sandboxes as local processes, one account each."""

    gpu_devices = Dict(
        {},
        help="""GPU devices of this machine per GPU type, assigned exclusively to sandboxes:
        a sandbox can open only its devices' nodes (gpu_device_node), and
        CUDA_VISIBLE_DEVICES names them. Every gpu_type used by a profile needs an entry.

            c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1", "2", "3"]}
        """,
    ).tag(config=True)

    gpu_device_node = Unicode(
        "/dev/nvidia{id}",
        help="""The device node of GPU {id} (a gpu_devices id). A sandbox may open the nodes
        of its granted GPUs and the control nodes; every other GPU's node is refused.

            c.LocalProfileSpawner.gpu_device_node = "/dev/nvidia{id}"
        """,
    ).tag(config=True)

    gpu_control_nodes = List(
        Unicode(),
        list(NVIDIA_CONTROL_NODES),
        help="""Device nodes a sandbox with GPUs also needs (those that exist are allowed).

            c.LocalProfileSpawner.gpu_control_nodes = ["/dev/nvidiactl", "/dev/nvidia-uvm"]
        """,
    ).tag(config=True)

    enforce_limits = Bool(
        True,
        help="""Confine each sandbox: a cgroup (v2 when delegated, else v1) with its memory,
        CPU and task limits and device allow-list; without writable cgroups (a hub that is
        not root), RLIMIT_DATA and CPU affinity per process. Set False to only report the
        grant.""",
    ).tag(config=True)

    cgroup_root = Unicode(
        "/sys/fs/cgroup",
        help="""cgroup v2 directory delegated to the hub (memory, cpu and pids in its
        cgroup.subtree_control), in which per-server groups are created. Without one, the
        cgroup v1 controllers under /sys/fs/cgroup/<controller>/ are used when writable.

            c.LocalProfileSpawner.cgroup_root = "/sys/fs/cgroup/dsplatform.slice"
        """,
    ).tag(config=True)

    max_tasks = Int(
        1024,
        help="""Processes and threads a sandbox may have at once (pids.max of its cgroup): a
        fork loop stops there instead of exhausting the machine.

            c.LocalProfileSpawner.max_tasks = 1024
        """,
    ).tag(config=True)

    account_template = Unicode(
        "dsp-{username}",
        help="""Unix account of each hub user's sandbox when the hub runs as root, created
        on first spawn (no login shell). {username} is the hub user name, reduced to
        letters, digits, '-' and '_' (with a hash appended when that changed it).

            c.LocalProfileSpawner.account_template = "dsp-{username}"
        """,
    ).tag(config=True)

    account_uid_range = Tuple(
        Int(),
        Int(),
        default_value=(20000, 29999),
        help="""uids (and gids) of the sandbox accounts the hub creates.

            c.LocalProfileSpawner.account_uid_range = (20000, 29999)
        """,
    ).tag(config=True)

    _limits: os_limits.LimitPlan | None = None
    _account: Account | None = None

    @default("home_dir_template")
    def _home_dir_template_default(self) -> str:
        return str(state_dir() / "users" / "{username}")

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return singleuser_command(None)

    @property
    def account_name(self) -> str:
        return account_name(self.account_template, self.user.name)

    # --- start ---------------------------------------------------------------------------
    def apply_grant(self, grant: Grant, request: Request) -> None:
        super().apply_grant(grant, request)
        toolchain = request.profile.toolchain
        self.cmd = singleuser_command(toolchain.local_python if toolchain else None)
        if self._job is not None:  # a notebook job: papermill in place of the notebook server
            self.cmd = [self.cmd[0], "-m", "server_ext.job_runner"]
        self._limits = None
        if self.enforce_limits:
            devices = None
            if isolating():
                devices = sandbox_rules(grant.devices, self.gpu_device_node,
                                        self.gpu_control_nodes)  # fmt: skip
            limits = os_limits.Limits(grant.memory, grant.cpu, self.max_tasks, devices)
            self._limits = os_limits.plan_limits(
                limits,
                name=f"{self.account_name}-{grant.server or 'default'}",
                hierarchy=os_limits.detect(self.cgroup_root),
                available=sorted(os.sched_getaffinity(0)),
            )

    async def before_launch(self) -> None:
        """The account, workspace and cgroups, then the profile's datasets (as the account)."""
        try:
            await asyncio.to_thread(self._prepare_host)
        except (AccountError, OSError) as e:
            os_limits.release(self._limits)
            raise SpawnRefusal(
                f"Could not prepare the sandbox of {self.user.name}: {e}",
                reason="sandbox",
                status_code=500,
            ) from None
        try:
            await self._preload()
        except BaseException:
            os_limits.release(self._limits)
            raise

    def _prepare_host(self) -> None:
        workspace = Path(self.home_dir)
        if isolating():
            if self.account_name == ModelServing(config=self.config).account:
                raise AccountError(
                    f"account {self.account_name!r} is the model serving account: "
                    "no sandbox runs as it (c.LocalProfileSpawner.account_template)"
                )
            self._account = ensure_account(
                self.account_name,
                workspace,
                f"dsplatform sandbox of hub user {self.user.name}",
                self.account_uid_range,
            )
            prepare_workspace(workspace, self._account)
            remote = self.user_dvc_remote()
            if remote and "://" not in remote:
                private_dir(Path(remote), self._account)
        else:
            workspace.mkdir(parents=True, exist_ok=True)
        if self._limits is not None:
            os_limits.prepare(self._limits)

    async def _preload(self) -> None:
        request = self._request
        if request is None or not request.profile.datasets:
            return
        toolchain = request.profile.toolchain
        python = singleuser_command(toolchain.local_python if toolchain else None)[0]
        env = self.get_env()
        env["DSPLATFORM_DATASETS"] = ",".join(request.profile.datasets)
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "server_ext.preload",
            env=env,
            preexec_fn=self.make_preexec_fn(self.user.name),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise SpawnRefusal(
                f"Could not preload datasets {', '.join(request.profile.datasets)}: {text[-500:]}",
                reason="preload",
                status_code=502,
            )
        self.log.info("dsplatform: %s", text.replace("\n", "; "))

    def worker_identity(self) -> dict[str, Any]:
        """The user's Dask schedulers and workers run as their sandbox does: their account,
        workspace as HOME, one cgroup each (limits, devices), the profile's Python."""
        pythons = {
            p.slug: singleuser_command(p.toolchain.local_python if p.toolchain else None)[0]
            for p in self.policy.profiles
        }
        return {
            "account": self.account_name if isolating() else "",
            "workspace": self.home_dir,
            "enforce_limits": self.enforce_limits,
            "cgroup_root": self.cgroup_root,
            "max_tasks": self.max_tasks,
            "gpu_device_node": self.gpu_device_node,
            "gpu_control_nodes": list(self.gpu_control_nodes),
            "python": pythons,
        }

    # --- the process ---------------------------------------------------------------------
    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        grant = self.grant
        env["CUDA_VISIBLE_DEVICES"] = ",".join(grant.devices) if grant else ""
        env["DSPLATFORM_LIMITS"] = self._limits.method if self._limits else "none"
        env["DSPLATFORM_WORKSPACE"] = self.home_dir
        return env

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"  # for JupyterLab terminals; the account cannot log in
        if isolating():
            env["USER"] = env["LOGNAME"] = self.account_name
            env["TMPDIR"] = os.path.join(self.home_dir, ".tmp")  # not the shared /tmp
            env["DVC_SITE_CACHE_DIR"] = os.path.join(self.home_dir, ".cache", "dvc-site")
        else:
            env["USER"] = self.user.name
        return env

    def make_preexec_fn(self, name: str) -> Any:
        plan, account, home = self._limits, self._account, self.home_dir

        def preexec() -> None:
            if plan is not None:
                os_limits.apply_in_child(plan)  # as root: join the cgroups
            if account is not None:
                drop_privileges(account)
            os.umask(0o022)
            os.makedirs(home, exist_ok=True)
            os.chdir(home)
            if account is not None:
                os.makedirs(os.path.join(home, ".tmp"), mode=0o700, exist_ok=True)

        return preexec

    # --- state and stop ------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._limits is not None:
            state["dsplatform_limits"] = self._limits.to_state()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("dsplatform_limits"):
            self._limits = os_limits.LimitPlan.from_state(state["dsplatform_limits"])
        if isolating() and self.user is not None:
            self._account = Account.lookup(self.account_name)

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            # the server's stray processes (kernels, a forked child) go with it
            await asyncio.to_thread(os_limits.release, self._limits)
