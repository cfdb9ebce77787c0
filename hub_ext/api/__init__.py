"""The hub's own handlers: REST under ``/hub/api/dsplatform/`` (usage, datasets, jobs, Dask
workers) and the admin usage page ``/hub/dsplatform/usage`` (with a navigation-bar link in
the hub's pages)."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

ROUTES = {
    r"/api/dsplatform/usage": "hub_ext.api.usage:UsageAPIHandler",
    r"/api/dsplatform/datasets": "hub_ext.api.datasets:DatasetsAPIHandler",
    r"/api/dsplatform/jobs": "hub_ext.api.jobs:JobsAPIHandler",
    r"/api/dsplatform/jobs/([0-9a-f]{12})": "hub_ext.api.jobs:JobAPIHandler",
    r"/api/dsplatform/jobs/([0-9a-f]{12})/result": "hub_ext.api.jobs:JobResultAPIHandler",
    r"/api/dsplatform/workers": "hub_ext.api.workers:WorkersAPIHandler",
    r"/api/dsplatform/workers/check": "hub_ext.api.workers:WorkersCheckAPIHandler",
    r"/api/dsplatform/workers/options": "hub_ext.api.workers:WorkerOptionsAPIHandler",
    r"/api/dsplatform/workers/([0-9a-f]{32})": "hub_ext.api.workers:WorkerAPIHandler",
    r"/dsplatform/usage": "hub_ext.api.admin_page:UsagePageHandler",
}
TEMPLATES = str(Path(__file__).parent / "templates")
DATASETS_SCOPE = "custom:dsplatform:datasets"  # the hub's dataset API; every user holds it
JOBS_SCOPE = "custom:dsplatform:jobs"  # the user's own notebook jobs; every user holds it
USER_SCOPES = [DATASETS_SCOPE, JOBS_SCOPE]
# a sandbox's own token: JupyterHub's defaults, the hub's dataset API (its catalog when no
# catalog service runs) and the user's jobs (%dsdata run)
SANDBOX_SCOPES = ["users:activity!user", "access:servers!server", *USER_SCOPES]


def wire(c: Config) -> None:
    """Register the handlers as ``c.JupyterHub.extra_handlers`` (once, keeping others)."""
    from importlib import import_module

    handlers = list(c.JupyterHub.get("extra_handlers", []))
    for pattern, target in ROUTES.items():
        module, _, name = target.partition(":")
        route = (pattern, getattr(import_module(module), name))
        if route not in handlers:
            handlers.append(route)
    c.JupyterHub.extra_handlers = handlers
    paths = list(c.JupyterHub.get("template_paths", []))
    if TEMPLATES not in paths:
        c.JupyterHub.template_paths = [TEMPLATES, *paths]
    scopes = list(c.Spawner.get("server_token_scopes", [])) or SANDBOX_SCOPES[:2]
    c.Spawner.server_token_scopes = [*scopes, *(s for s in SANDBOX_SCOPES if s not in scopes)]
    c.JupyterHub.custom_scopes = {
        **c.JupyterHub.get("custom_scopes", {}),
        DATASETS_SCOPE: {
            "description": "Read the dataset catalog (GET /hub/api/dsplatform/datasets)"
        },
        JOBS_SCOPE: {
            "description": "Submit, list and cancel your notebook jobs (/hub/api/dsplatform/jobs)"
        },
    }
    from hub_ext.jobs import manager, settings

    settings.check(settings.NotebookJobs(config=c))
    roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != manager.SERVICE]
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", *USER_SCOPES]})
    else:
        held = user_role.get("scopes", ["self"])
        user_role["scopes"] = [*held, *(s for s in USER_SCOPES if s not in held)]
    # the hub starts and stops job servers through its own API, as this service (no process)
    roles.append({"name": manager.SERVICE, "scopes": manager.SERVICE_SCOPES,
                  "services": [manager.SERVICE]})  # fmt: skip
    c.JupyterHub.load_roles = roles
    services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != manager.SERVICE]
    services.append({"name": manager.SERVICE, "api_token": manager.TOKEN})
    c.JupyterHub.services = services
    from hub_ext.monitoring import hub_metrics

    hub_metrics.register()
