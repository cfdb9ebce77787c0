"""How models are served: the admin's settings, declared once and handed to the catalog
service (local pool) or the chart's ``serving`` Deployment (:mod:`.manager`)."""

from __future__ import annotations

from traitlets import Float, Int, Tuple, Unicode
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError
from hub_ext.spawners.accounts import NAME_RE


class ModelServing(Configurable):
    """Serving workers: one process per served (model, version), bounded in number."""

    max_workers = Int(
        4,
        help="""Most serving workers alive at once; the least recently used idle one stops
        when another model version is asked for.

            c.ModelServing.max_workers = 8
        """,
    ).tag(config=True)

    start_timeout = Float(
        120.0,
        help="""Seconds a worker may take to load its model before the request gets 504 and
        the worker is stopped.

            c.ModelServing.start_timeout = 300   # large models
        """,
    ).tag(config=True)

    request_timeout = Float(
        30.0,
        help="""Seconds one prediction may take; past it the request gets 504 and the
        worker is restarted (a hung model affects its own endpoint only).

            c.ModelServing.request_timeout = 10
        """,
    ).tag(config=True)

    account = Unicode(
        "dsplatform-serving",
        help="""Local mode, hub running as root: the unprivileged unix account that serving
        workers run as (created on first use; no hub token, no access to the hub's state).
        No sandbox may run as it.

            c.ModelServing.account = "dsplatform-serving"
        """,
    ).tag(config=True)

    account_uid_range = Tuple(
        Int(),
        Int(),
        default_value=(19000, 19999),
        help="""uid/gid range for the serving account when it is created.

            c.ModelServing.account_uid_range = (19000, 19999)
        """,
    ).tag(config=True)

    root = Unicode(
        "",
        help="""Where the catalog keeps served models' files and the workers' sockets
        (default: serving/ in the platform's state directory).

            c.ModelServing.root = "/srv/dsplatform/serving"
        """,
    ).tag(config=True)

    manager_url = Unicode(
        "",
        help="""Where the serving manager listens when workers run elsewhere (the Helm
        chart's serving Deployment); "" runs the workers on the catalog's machine. The
        catalog authenticates with the secret in $DSPLATFORM_SERVING_SECRET.

            c.ModelServing.manager_url = "http://dsplatform-serving:8000"
        """,
    ).tag(config=True)


def check(c: Config) -> None:
    """Start-up checks (ConfigError naming the key)."""
    serving = ModelServing(config=c)
    for name in ("max_workers", "start_timeout", "request_timeout"):
        if getattr(serving, name) <= 0:
            raise ConfigError(
                f"c.ModelServing.{name}: must be positive, not {getattr(serving, name)}"
            )
    if not NAME_RE.match(serving.account):
        raise ConfigError(f"c.ModelServing.account: {serving.account!r} is not a unix account name")
    low, high = serving.account_uid_range
    if not 1000 <= low <= high:
        raise ConfigError(
            f"c.ModelServing.account_uid_range: {serving.account_uid_range!r} must be "
            "(low, high) with 1000 <= low <= high"
        )
    if serving.manager_url and not serving.manager_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"c.ModelServing.manager_url: {serving.manager_url!r} is not an http(s) URL"
        )
