"""``GET /hub/dsplatform/usage``: the admin usage view, in the hub's page template (linked
from the navigation bar of those who see the Admin page). Needs ``read:users`` and
``read:servers`` on everyone, as ``GET /hub/api/dsplatform/usage?all=1`` does. Below the
servers: the notebook jobs (waiting with their queue position, running, the last finished)."""

from __future__ import annotations

import datetime as dt

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from hub_ext.api.overview import current_usage
from hub_ext.api.usage import ALL_SCOPES
from hub_ext.jobs import records
from hub_ext.jobs.manager import JobManager


def age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class UsagePageHandler(BaseHandler):
    @web.authenticated
    async def get(self) -> None:
        missing = [s for s in ALL_SCOPES if not self.has_scope(s)]
        if missing:
            raise web.HTTPError(403, "The platform's usage is for admins")
        usage = current_usage(self.db, self.users.values(), self.settings["config"],
                              self.settings["spawner_class"])  # fmt: skip
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        manager = JobManager.shared()
        store = manager.load(self.db)
        active = store.in_states(*records.ACTIVE)
        finished = [r for r in store.everyone(limit=50) if r.state not in records.ACTIVE]
        jobs = [r.to_json(manager.position(r.id)) for r in [*active, *finished]]
        html = await self.render_template("dsplatform_usage.html", usage=usage, now=now, age=age,
                                          jobs=jobs)  # fmt: skip
        self.finish(html)
