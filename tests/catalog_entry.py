"""Build the catalog service's Application exactly as the hub's service entry would run it
(its environment plus what JupyterHub adds), without serving: for checks of what reached it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hub_ext.services.catalog.app import CatalogService


@contextmanager
def service_environment(entry: Mapping[str, Any]) -> Iterator[None]:
    env = {
        **entry.get("environment", {}),
        "JUPYTERHUB_SERVICE_URL": entry["url"],
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/{entry['name']}/",
        "JUPYTERHUB_API_TOKEN": "not-used-here",
    }
    with mock.patch.dict(os.environ, env):
        yield


def catalog_from_entry(entry: Mapping[str, Any]) -> CatalogService:
    """The initialised (not started) catalog service of a hub service ``entry``."""
    with service_environment(entry):
        app = CatalogService()
        app.initialize([])
        # what the process reads from its environment (lazily, in the real one)
        _ = (app.service_url, app.prefix, app.tracking_uri)
    return app
