"""``GET /hub/api/dsplatform/usage``: the calling user's limits, usage, pools and profiles."""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from hub_ext.admission.accounting import GpuAccounting
from hub_ext.admission.admit import Applicant
from hub_ext.admission.policy import load_policy
from hub_ext.admission.reservations import Ledger
from hub_ext.admission.usage import usage_report
from hub_ext.api.callers import per_user_caller


class UsageAPIHandler(APIHandler):
    """Usage report for the token's user; admins may ask for ``?user=NAME``."""

    async def get(self) -> None:
        caller = per_user_caller(self, "Usage")
        target = caller
        wanted = self.get_argument("user", None)
        if wanted and wanted != caller.name:
            if not caller.admin:
                raise web.HTTPError(403, "Only admins may read another user's usage")
            target = self.find_user(wanted)
            if target is None:
                raise web.HTTPError(404, f"No such user: {wanted}")
        policy = load_policy(self.settings["config"], self.settings["spawner_class"])
        applicant = Applicant(target.name, groups=tuple(sorted(g.name for g in target.groups)))
        hours = GpuAccounting(self.db).hours_this_week
        report = usage_report(policy, Ledger.shared(), applicant, hours)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(report))
