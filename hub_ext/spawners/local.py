"""``dsplatform-local``: sandboxes as local processes on one (possibly multi-GPU) machine.

Each user gets a workspace under ``$DSPLATFORM_STATE_DIR/users/<name>``. GPUs listed in
``c.LocalProfileSpawner.gpu_devices`` are assigned exclusively through
``CUDA_VISIBLE_DEVICES`` and returned on stop. Memory and CPU are confined with cgroup v2
when the hub has a delegated hierarchy, else with rlimits and CPU affinity
(see :mod:`hub_ext.spawners.os_limits`). A toolchain's ``local_python`` selects the Python
environment the sandbox runs in; without one, the hub's own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner, SpawnException
from traitlets import Bool, Dict, Unicode, default
from traitlets.config import Config

from hub_ext.admission.options import Request
from hub_ext.admission.reservations import Grant
from hub_ext.spawners.base import ProfileSpawner

from . import os_limits


def state_dir() -> Path:
    """``$DSPLATFORM_STATE_DIR`` (default ``./.dsplatform``), absolute."""
    return Path(os.environ.get("DSPLATFORM_STATE_DIR", ".dsplatform")).resolve()


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


class LocalProfileSpawner(ProfileSpawner, SimpleLocalProcessSpawner):
    """Profile- and quota-governed sandboxes as local processes."""

    gpu_devices = Dict(
        {},
        help="""GPU devices of this machine per GPU type, assigned exclusively to sandboxes
        through CUDA_VISIBLE_DEVICES. Every gpu_type used by a profile needs an entry.

            c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1", "2", "3"]}
        """,
    ).tag(config=True)

    enforce_limits = Bool(
        True,
        help="""Confine each sandbox's memory and CPU (cgroup v2 when delegated, else
        RLIMIT_DATA and CPU affinity). Set False to only report the grant.""",
    ).tag(config=True)

    cgroup_root = Unicode(
        "/sys/fs/cgroup",
        help="cgroup v2 directory in which per-server groups are created, when writable.",
    ).tag(config=True)

    _limits: os_limits.LimitPlan | None = None

    @default("home_dir_template")
    def _home_dir_template_default(self) -> str:
        return str(state_dir() / "users" / "{username}")

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return singleuser_command(None)

    def apply_grant(self, grant: Grant, request: Request) -> None:
        super().apply_grant(grant, request)
        toolchain = request.profile.toolchain
        self.cmd = singleuser_command(toolchain.local_python if toolchain else None)
        self._limits = None
        if self.enforce_limits:
            plan = os_limits.plan_limits(
                cpu=grant.cpu,
                memory=grant.memory,
                name=f"{grant.user}-{grant.server or 'default'}",
                cgroup_root=os_limits.delegated_cgroup(self.cgroup_root),
                available=sorted(os.sched_getaffinity(0)),
            )
            os_limits.prepare_cgroup(plan)
            self._limits = plan

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        grant = self.grant
        env["CUDA_VISIBLE_DEVICES"] = ",".join(grant.devices) if grant else ""
        env["DSPLATFORM_LIMITS"] = self._limits.method if self._limits else "none"
        env["DSPLATFORM_WORKSPACE"] = self.home_dir
        return env

    def make_preexec_fn(self, name: str) -> Any:
        prepare = super().make_preexec_fn(name)
        plan = self._limits

        def preexec() -> None:
            prepare()
            if plan is not None:
                os_limits.apply_in_child(plan)

        return preexec

    async def before_launch(self) -> None:
        """Preload the profile's datasets into the workspace, before the server starts."""
        request = self._request
        if request is None or not request.profile.datasets:
            return
        toolchain = request.profile.toolchain
        python = singleuser_command(toolchain.local_python if toolchain else None)[0]
        Path(self.home_dir).mkdir(parents=True, exist_ok=True)
        env = self.get_env()
        env["DSPLATFORM_DATASETS"] = ",".join(request.profile.datasets)
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "server_ext.preload",
            cwd=self.home_dir, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise SpawnException(
                f"Could not preload datasets {', '.join(request.profile.datasets)}: {text[-500:]}",
                reason="preload",
                status_code=502,
            )
        self.log.info("dsplatform: %s", text.replace("\n", "; "))

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            os_limits.remove_cgroup(self._limits)


def wire(c: Config, spawner_class: type) -> None:
    """Process settings of local sandboxes."""
    if os.geteuid() == 0:
        # jupyterhub-singleuser refuses to run as root without this flag
        args = list(c.Spawner.get("args", []))
        if "--allow-root" not in args:
            c.Spawner.args = [*args, "--allow-root"]
