"""The hub's own handlers: REST under ``/hub/api/dsplatform/`` (usage, datasets) and the
admin usage page ``/hub/dsplatform/usage`` (with a navigation-bar link in the hub's pages)."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

ROUTES = {
    r"/api/dsplatform/usage": "hub_ext.api.usage:UsageAPIHandler",
    r"/api/dsplatform/datasets": "hub_ext.api.datasets:DatasetsAPIHandler",
    r"/dsplatform/usage": "hub_ext.api.admin_page:UsagePageHandler",
}
TEMPLATES = str(Path(__file__).parent / "templates")
DATASETS_SCOPE = "custom:dsplatform:datasets"  # the hub's dataset API; every user holds it
# a sandbox's own token: JupyterHub's defaults, and the hub's dataset API (its catalog when
# no catalog service runs)
SANDBOX_SCOPES = ["users:activity!user", "access:servers!server", DATASETS_SCOPE]


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
    }
    roles = list(c.JupyterHub.get("load_roles", []))
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", DATASETS_SCOPE]})
    elif DATASETS_SCOPE not in user_role.get("scopes", []):
        user_role["scopes"] = [*user_role.get("scopes", ["self"]), DATASETS_SCOPE]
    c.JupyterHub.load_roles = roles
    from hub_ext.monitoring import hub_metrics

    hub_metrics.register()
