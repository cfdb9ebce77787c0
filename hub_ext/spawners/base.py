"""``ProfileSpawner``: the profile and quota layer shared by the local and Kubernetes spawners.

It gathers inputs (user, groups, ``user_options``, the admin's policy), calls
:func:`hub_ext.admission.admit.admit` (pure arithmetic and one atomic reservation in the
:class:`~hub_ext.admission.reservations.Ledger`), and turns a
:class:`~hub_ext.admission.refusals.Refusal` into JupyterHub's ``SpawnException`` (the one
place where policy meets HTTP). Concrete spawners
implement :meth:`ProfileSpawner.apply_grant` to turn the grant into a process or a pod.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jupyterhub.spawner import SpawnException
from traitlets import Dict, List, Unicode, default
from traitlets.config import LoggingConfigurable

from hub_ext.admission.accounting import GpuAccounting
from hub_ext.admission.admit import Applicant, admit
from hub_ext.admission.options import Request
from hub_ext.admission.policy import Policy, load_policy
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger
from hub_ext.admission.usage import usage_report
from hub_ext.errors import ConfigError
from hub_ext.jobs.manager import JobManager
from hub_ext.jobs.records import JobRecord
from hub_ext.jobs.spec import SERVER_PREFIX, job_id_of
from hub_ext.monitoring.hub_metrics import DECISIONS, REFUSALS
from hub_ext.spawners.accounts import account_name
from hub_ext.spawners.form import options_from_form, render_options_form

if TYPE_CHECKING:  # for the type checker, the mixin is the spawner it is mixed into
    from jupyterhub.spawner import Spawner as _SpawnerBase
else:
    _SpawnerBase = LoggingConfigurable


class SpawnRefusal(SpawnException):
    """JupyterHub's ``SpawnException`` whose text, on the spawn form and the error page, is
    the sentence itself (JupyterHub would show ``400 SpawnException(reason=invalid): …``)."""

    def __init__(self, message: str, *, reason: str, status_code: int) -> None:
        super().__init__(message, reason=reason, status_code=status_code)
        self.jupyterhub_message = message  # what format_exception shows users

    def __str__(self) -> str:
        return self.message


class ProfileSpawner(_SpawnerBase):
    """Mixin for dsplatform spawners: profiles, quota reservations, sandbox environment.

    Put it before a concrete JupyterHub spawner, which supplies ``start``/``stop``/``poll``:
    ``class LocalProfileSpawner(ProfileSpawner, SimpleLocalProcessSpawner)``. Its traits are
    configured as ``c.ProfileSpawner.*`` for every dsplatform spawner.
    """

    toolchains = Dict(
        {},
        help="""Named, preinstalled tool sets a profile can refer to.

        Keys per toolchain: image (Kubernetes), local_python (local mode: path to a Python
        environment's interpreter or prefix; None = the hub's), description, env.

            c.ProfileSpawner.toolchains = {
                "scipy": {"image": "quay.io/jupyter/scipy-notebook:2025-10-20",
                          "local_python": None},
            }
        """,
    ).tag(config=True)

    profiles = List(
        [{"slug": "default", "display_name": "Default", "cpu": 1, "memory": "1G"}],
        help="""Sandbox profiles users choose from. Each is a dict with keys slug,
        display_name, description, toolchain, cpu, memory, gpu, gpu_type, disk, groups,
        idle_timeout, datasets, env, kubespawner_override, default. A resource is a bare
        value (fixed) or {"default": .., "min": .., "max": ..}; "max" defaults to "default".

            c.ProfileSpawner.profiles = [
                {"slug": "cpu-small", "toolchain": "scipy",
                 "cpu": {"default": 1, "min": 0.5, "max": 2},
                 "memory": {"default": "2G", "max": "4G"}, "groups": ["*"],
                 "idle_timeout": 3600},
            ]

        Checked when the hub starts: unknown keys, min > max, a default outside its range,
        unknown toolchains and duplicate slugs stop the hub with the profile and key named.
        """,
    ).tag(config=True)

    mlflow_tracking_uri = Unicode(
        "",
        help="MLflow tracking server URL given to sandboxes as MLFLOW_TRACKING_URI.",
    ).tag(config=True)

    mlflow_ui_url = Unicode(
        "",
        help="""Where a user's browser opens the MLflow UI, given to sandboxes as
        DSDATA_MLFLOW_UI_URL (links in the sidebar and %dsdata output); default with the
        catalog service: its login-protected /services/catalog/mlflow/.""",
    ).tag(config=True)

    catalog_url = Unicode(
        "",
        help="""Dataset catalog API URL given to sandboxes as DSDATA_CATALOG_URL; default:
        the hub's own GET /hub/api/dsplatform/datasets.""",
    ).tag(config=True)

    dvc_remote = Unicode(
        "",
        help="""DVC remote for experiment outputs (%dsdata commit --outputs), given to
        sandboxes as DSDATA_DVC_REMOTE; a path or URL. {username} makes it one per user
        (local mode creates it, private to the user's account).

            c.ProfileSpawner.dvc_remote = "/srv/dsplatform/dvc-remote/{username}"
        """,
    ).tag(config=True)

    dataset_cache_dir = Unicode(
        "",
        help="Shared dataset cache directory given to sandboxes as DSDATA_CACHE_DIR.",
    ).tag(config=True)

    _grant: Grant | None = None
    _request: Request | None = None
    _job: JobRecord | None = None  # this server runs a notebook job (hub_ext.jobs)

    # --- policy ------------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return load_policy(self.config, type(self))

    @property
    def ledger(self) -> Ledger:
        return Ledger.shared()

    def _accounting(self) -> GpuAccounting:
        return GpuAccounting(self.user.db)

    def group_names(self) -> list[str]:
        return sorted(g.name for g in self.user.groups)

    @property
    def grant(self) -> Grant | None:
        return self._grant

    def applicant(self) -> Applicant:
        return Applicant(self.user.name, self.name, tuple(self.group_names()))

    def admit(self) -> Grant:
        """Validate ``user_options`` and reserve the resources, or raise ``SpawnException``.

        Synchronous from the first check to the reservation, so concurrent spawns in the
        hub's event loop cannot overshoot any limit.
        """
        try:
            policy = self.policy
        except ConfigError as e:  # only reachable when configure() was not called
            raise SpawnRefusal(
                f"dsplatform is misconfigured: {e}", reason="error", status_code=500
            ) from None
        options, job = self._job_options()
        kind = "job" if job is not None else "server"
        accounting = self._accounting()
        stale = self.ledger.get(self.user.name, self.name)
        try:
            with DECISIONS.time():
                admission = admit(options, self.applicant(), policy, self.ledger,
                                  accounting.hours_this_week, kind)  # fmt: skip
        except Refusal as refusal:
            REFUSALS.labels(refusal.reason).inc()
            raise SpawnRefusal(
                refusal.message, reason=refusal.reason, status_code=refusal.status_code
            ) from None
        grant, request = admission.grant, admission.request
        if job is not None:
            self._job = job
            self.poll_interval = 1  # its end frees the grant within a second, not in 30
        if stale is not None and stale.session_id is not None:
            accounting.close(stale.session_id)  # reserve() replaced a stale grant
        if grant.gpus and grant.gpu_type:
            session = accounting.open(grant.user, grant.server, grant.gpu_type, grant.gpus)
            grant = self.ledger.attach_session(grant, session)
        self._grant, self._request = grant, request
        self.log.info(
            "dsplatform: reserved %s for %s (profile %s, devices %s)",
            request.resources(),
            self._log_name,
            grant.profile,
            ",".join(grant.devices) or "-",
        )
        return grant

    def _job_options(self) -> tuple[Any, JobRecord | None]:
        """The options to admit, and the job this server runs (None: a sandbox). A server
        named ``job-<id>`` starts only for its job's record (state starting, this user),
        which the job manager made: no other route can start a job server (or dodge the
        idle culler as one)."""
        options = self.user_options
        job = options.get("job") if isinstance(options, dict) else None
        job_id = job_id_of(self.name)
        if job is None and not self.name.startswith(SERVER_PREFIX):
            return options, None
        record = None
        if job_id and isinstance(job, dict) and job.get("id") == job_id:
            record = JobManager.shared().expected(self.user.db, self.user.name, job_id)
        if record is None:
            raise SpawnRefusal(
                f"Servers named {SERVER_PREFIX}… run notebook jobs; submit a job with "
                "%dsdata run or POST /hub/api/dsplatform/jobs",
                reason="invalid", status_code=400,
            )  # fmt: skip
        return {k: v for k, v in options.items() if k != "job"}, record

    def release(self) -> None:
        """Give back what this server holds (idempotent); waiting jobs may then start."""
        grant, self._grant = self._grant, None
        if grant is None:
            return
        released = self.ledger.release(grant.user, grant.server, grant.id)
        if grant.session_id is not None:
            self._accounting().close(grant.session_id)
        if released is not None:
            self.log.info("dsplatform: released %s's reservation", self._log_name)
            JobManager.shared().kick()

    def apply_grant(self, grant: Grant, request: Request) -> None:
        """Turn the grant into spawner settings (limits, image, devices). Subclasses extend."""
        self.cpu_limit = grant.cpu
        self.mem_limit = grant.memory

    async def before_launch(self) -> None:
        """Work between admission and launch (local mode: dataset preload)."""

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> Any:
        grant = self.admit()
        assert self._request is not None
        try:
            self.apply_grant(grant, self._request)
            await self.before_launch()
            started = await super().start()
        except BaseException:
            self.release()
            raise
        if self._job is not None:
            JobManager.shared().running(self.user.db, self._job.id)
        return started

    async def poll(self) -> int | None:
        had_process = getattr(self, "proc", None) is not None
        status: int | None = await super().poll()
        if status is not None and self._job is not None:
            # the process's own code; None without the process handle (after a hub restart,
            # or a pod): then the code the runner reported
            self._job_ended(status if had_process else None)
        return status

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self.release()
            self._job_ended(None)  # stopped by the hub: the runner's reported code, if any

    def _job_ended(self, exit_status: int | None) -> None:
        """Record a job's end, once (JupyterHub does not call stop() for a server whose
        process ended by itself: the poll that sees it is the end)."""
        job, self._job = self._job, None
        if job is not None:
            JobManager.shared().finished(self.user.db, job.id, exit_status)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._grant is not None:
            state["dsplatform_grant"] = self._grant.to_state()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        data = state.get("dsplatform_grant")
        if data and self.orm_spawner is not None and self.orm_spawner.server is not None:
            grant = Grant.from_state(data)
            self.ledger.restore(grant)
            self._grant = grant
            job_id = job_id_of(self.name)
            if grant.kind == "job" and job_id:
                self._job = JobManager.shared().record(self.user.db, job_id)
                self.poll_interval = 1
            policy = self.policy
            profile = policy.profile(grant.profile)
            if profile is not None:
                self._request = Request(profile, grant.cpu, grant.memory, grant.gpus, grant.disk)

    def clear_state(self) -> None:
        super().clear_state()
        self.release()

    # --- sandbox environment ------------------------------------------------------------
    def sandbox_env(self) -> dict[str, str]:
        """The variables docs/contract.md promises every sandbox."""
        env: dict[str, str] = {}
        if self._request is None or self._grant is None:
            return env
        profile = self._request.profile
        if profile.toolchain is not None:
            env.update(profile.toolchain.env)
        env.update(profile.env)
        env["DSPLATFORM_PROFILE"] = profile.slug
        env["DSPLATFORM_RESOURCES"] = json.dumps(self._request.resources(), sort_keys=True)
        catalog_url = self.catalog_url
        if not catalog_url and self.hub is not None:
            catalog_url = self.hub.api_url.rstrip("/") + "/dsplatform/datasets"
        if self.mlflow_tracking_uri and self.api_token:
            # MLflow knows the user by their hub token (MLflow's standard variable)
            env["MLFLOW_TRACKING_TOKEN"] = self.api_token
        for name, value in (
            ("MLFLOW_TRACKING_URI", self.mlflow_tracking_uri),
            ("DSDATA_MLFLOW_UI_URL", self.mlflow_ui_url),
            ("DSDATA_CATALOG_URL", catalog_url),
            ("DSDATA_CACHE_DIR", self.dataset_cache_dir),
            ("DSDATA_DVC_REMOTE", self.user_dvc_remote()),
        ):
            if value:
                env[name] = value
        if profile.datasets:
            env["DSPLATFORM_DATASETS"] = ",".join(profile.datasets)
        if self._job is not None:
            job = self._job
            env["DSPLATFORM_JOB"] = json.dumps({
                "id": job.id, "notebook": job.spec.notebook, "parameters": job.spec.parameters,
                "output": job.output, "log": f"{job.output_dir}/log.txt",
                "commit": job.spec.commit,
            })  # fmt: skip
        return env

    def worker_identity(self) -> dict[str, Any]:
        """How the Dask gateway runs this user's workers (local mode: their account; see
        :class:`hub_ext.spawners.local.LocalProfileSpawner`); empty where it does not."""
        return {}

    def user_dvc_remote(self) -> str:
        """``dvc_remote`` with ``{username}`` expanded (one remote per user)."""
        return self.dvc_remote.replace("{username}", account_name("{username}", self.user.name))

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self.sandbox_env())
        return env

    # --- form --------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        hours = self._accounting().hours_this_week
        return usage_report(self.policy, self.ledger, self.applicant(), hours)

    @default("options_form")
    def _options_form_default(self) -> Any:
        return render_options_form

    @default("options_from_form")
    def _options_from_form_default(self) -> Any:
        return options_from_form

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        # user_options are validated and applied by admit() in start()
        return lambda spawner, user_options: None
