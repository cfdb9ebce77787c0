"""Wire dsplatform into a JupyterHub configuration: ``configure(c)`` at the end of the file.

It validates everything first (profiles, toolchains, quotas, GPU devices, each service's
settings) and stops the hub with a message naming the key when something is wrong; then
each room adds what it owns: the hub API handlers (:mod:`hub_ext.api`), local mode's
isolation (:mod:`hub_ext.spawners.isolation`), the MLflow server, the catalog service and
the idle culler (:mod:`hub_ext.services`), and dask-gateway (:mod:`hub_ext.dask`).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from traitlets.config import Config, Configurable

from hub_ext import api
from hub_ext.admission.policy import Policy, load_policy
from hub_ext.dask import settings as dask
from hub_ext.errors import ConfigError, stop_invalid
from hub_ext.services import culler
from hub_ext.services.catalog import config as catalog
from hub_ext.services.mlflow import service as mlflow
from hub_ext.spawners import isolation


def resolve_spawner_class(value: Any) -> type[Configurable]:
    """``c.JupyterHub.spawner_class`` as a class (entry-point name, dotted path or class)."""
    if isinstance(value, type):
        return value
    name = str(value or "dsplatform-local")
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == name:
            cls: type[Configurable] = ep.load()
            return cls
    module, _, attr = name.rpartition(".")
    if not module:
        raise ConfigError(f"c.JupyterHub.spawner_class: unknown spawner {name!r}")
    mod = __import__(module, fromlist=[attr])
    loaded: type[Configurable] = getattr(mod, attr)
    return loaded


def configure(c: Config) -> Policy:
    """Validate and wire dsplatform into the hub config ``c``; exit(1) on invalid config."""
    try:
        spawner_class = resolve_spawner_class(c.JupyterHub.get("spawner_class"))
        policy = load_policy(c, spawner_class)
        isolation.check(c, spawner_class)
        mlflow.check(c)
        catalog.check(c)
        dask.check(c, spawner_class)
        api.wire(c)
        isolation.wire(c, spawner_class)
        mlflow.wire(c)  # before the catalog: it reads the tracking URI
        catalog.wire(c)
        culler.wire(c, policy)
        dask.wire(c, spawner_class)
    except ConfigError as e:
        stop_invalid(e)
    return policy
