"""``ProfileSpawner``: the profile and quota layer shared by the local and Kubernetes spawners.

It gathers inputs (user, groups, ``user_options``, the admin's policy), calls the pure
functions of :mod:`hub_ext.options` and :mod:`hub_ext.quota` through the
:class:`~hub_ext.reservations.Ledger`, and turns a :class:`~hub_ext.refusals.Refusal` into
JupyterHub's ``SpawnException`` (the one place where policy meets HTTP). Concrete spawners
implement :meth:`ProfileSpawner.apply_grant` to turn the grant into a process or a pod.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.spawner import Spawner, SpawnException
from traitlets import Dict, List, Unicode, default

from .accounting import GpuAccounting
from .options import Request, resolve_request
from .policy import Policy, load_policy
from .profiles import ConfigError
from .refusals import Refusal
from .reservations import Grant, Ledger
from .usage import usage_report

TEMPLATES = Path(__file__).parent / "templates"
_jinja = Environment(
    loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"])
)

FORM_FIELDS = ("cpu", "memory", "gpus", "disk")


class ProfileSpawner(Spawner):
    """Base for dsplatform spawners: profiles, quota reservations, sandbox environment."""

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
        sandboxes as DSDATA_DVC_REMOTE; a path or URL every sandbox can reach.""",
    ).tag(config=True)

    dataset_cache_dir = Unicode(
        "",
        help="Shared dataset cache directory given to sandboxes as DSDATA_CACHE_DIR.",
    ).tag(config=True)

    _grant: Grant | None = None
    _request: Request | None = None

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

    def admit(self) -> Grant:
        """Validate ``user_options`` and reserve the resources, or raise ``SpawnException``.

        Synchronous from the first check to the reservation, so concurrent spawns in the
        hub's event loop cannot overshoot any limit.
        """
        try:
            policy = self.policy
        except ConfigError as e:  # only reachable when configure() was not called
            raise SpawnException(
                f"dsplatform is misconfigured: {e}", reason="error", status_code=500
            ) from None
        groups = self.group_names()
        accounting = self._accounting()
        stale = self.ledger.get(self.user.name, self.name)
        try:
            request = resolve_request(self.user_options, policy.profiles, groups)
            hours = accounting.hours_this_week(self.user.name) if request.gpus else 0.0
            grant = self.ledger.reserve(
                request,
                user=self.user.name,
                server=self.name,
                groups=groups,
                tables=policy.quotas,
                devices=policy.gpu_devices,
                gpu_hours_used=hours,
            )
        except Refusal as refusal:
            raise SpawnException(
                refusal.message, reason=refusal.reason, status_code=refusal.status_code
            ) from None
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

    def release(self) -> None:
        """Give back what this server holds (idempotent)."""
        grant, self._grant = self._grant, None
        if grant is None:
            return
        released = self.ledger.release(grant.user, grant.server, grant.id)
        if grant.session_id is not None:
            self._accounting().close(grant.session_id)
        if released is not None:
            self.log.info("dsplatform: released %s's reservation", self._log_name)

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
            return await super().start()
        except BaseException:
            self.release()
            raise

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self.release()

    async def poll(self) -> int | None:
        status: int | None = await super().poll()
        return status

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
            policy = self.policy
            profile = policy.profile(grant.profile)
            if profile is not None:
                self._request = Request(profile, grant.cpu, grant.memory, grant.gpus, grant.disk)

    def clear_state(self) -> None:
        super().clear_state()
        self.release()

    # --- sandbox environment ------------------------------------------------------------
    def sandbox_env(self) -> dict[str, str]:
        """The variables DESIGN.md promises every sandbox."""
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
        for name, value in (
            ("MLFLOW_TRACKING_URI", self.mlflow_tracking_uri),
            ("DSDATA_MLFLOW_UI_URL", self.mlflow_ui_url),
            ("DSDATA_CATALOG_URL", catalog_url),
            ("DSDATA_CACHE_DIR", self.dataset_cache_dir),
            ("DSDATA_DVC_REMOTE", self.dvc_remote),
        ):
            if value:
                env[name] = value
        if profile.datasets:
            env["DSPLATFORM_DATASETS"] = ",".join(profile.datasets)
        return env

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update(self.sandbox_env())
        return env

    # --- form --------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        hours = self._accounting().hours_this_week(self.user.name)
        return usage_report(self.policy, self.ledger, self.user.name, self.group_names(), hours)

    @default("options_form")
    def _options_form_default(self) -> Any:
        return ProfileSpawner.render_options_form

    @staticmethod
    def render_options_form(spawner: ProfileSpawner) -> str:
        report = spawner.usage()
        previous = spawner.orm_spawner.user_options if spawner.orm_spawner is not None else None
        return _jinja.get_template("options_form.html").render(
            report=report, previous=previous or {}
        )

    @default("options_from_form")
    def _options_from_form_default(self) -> Any:
        return options_from_form

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        # user_options are validated and applied by admit() in start()
        return lambda spawner, user_options: None


def options_from_form(form_data: dict[str, list[str]]) -> dict[str, Any]:
    """Form fields (``profile`` and ``<slug>.<field>``) to typed ``user_options``.

    Only the chosen profile's fields are kept; numbers become numbers, anything that does
    not parse is passed on unchanged so validation refuses it with the usual message.
    """
    profile = (form_data.get("profile") or [""])[0]
    options: dict[str, Any] = {"profile": profile} if profile else {}
    for field in FORM_FIELDS:
        values = form_data.get(f"{profile}.{field}")
        if not values or values[0].strip() == "":
            continue
        text = values[0].strip()
        if field in ("cpu", "gpus"):
            try:
                number = float(text)
                options[field] = int(number) if number.is_integer() and "." not in text else number
            except ValueError:
                options[field] = text
        else:
            options[field] = text
    return options
