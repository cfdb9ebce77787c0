"""``c.NotebookJobs``: the admin's limits for notebook jobs."""

from __future__ import annotations

from traitlets import Int
from traitlets.config import Configurable

from hub_ext.errors import ConfigError


class NotebookJobs(Configurable):
    """Notebook jobs (``%dsdata run``, ``POST /hub/api/dsplatform/jobs``)."""

    max_runtime = Int(
        86400,
        help="""Seconds a job may run before it is stopped (state timed-out); a job may ask
        for less with --timeout.

            c.NotebookJobs.max_runtime = 12 * 3600
        """,
    ).tag(config=True)

    max_waiting = Int(
        100,
        help="""Jobs one user may have waiting in the queue at once (--wait); more are
        refused with 429.

            c.NotebookJobs.max_waiting = 100
        """,
    ).tag(config=True)


def check(settings: NotebookJobs) -> None:
    for key in ("max_runtime", "max_waiting"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"c.NotebookJobs.{key} must be a positive integer")
