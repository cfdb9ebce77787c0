"""The hub's own REST handlers under ``/hub/api/dsplatform/`` (usage, datasets)."""

from __future__ import annotations

from traitlets.config import Config

ROUTES = {
    r"/api/dsplatform/usage": "hub_ext.api.usage:UsageAPIHandler",
    r"/api/dsplatform/datasets": "hub_ext.api.datasets:DatasetsAPIHandler",
}


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
