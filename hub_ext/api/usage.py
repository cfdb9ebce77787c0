"""``GET /hub/api/dsplatform/usage``: a user's limits, usage, pools and profiles; with
``?all=1`` the whole platform for admins (:mod:`hub_ext.admission.overview`), as JSON or,
with ``?format=csv``, the servers as CSV.

Scopes are checked the JupyterHub way, on the token's own scopes: one user's report needs
``read:users`` for that user (a token's owner has it through ``self``; a token narrowed to
``read:users:name`` does not); the whole platform needs ``read:users`` and ``read:servers``
on everyone (the admin role; a narrowed admin token does not).
"""

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
from hub_ext.api.overview import current_usage

ALL_SCOPES = ("read:users", "read:servers")


class UsageAPIHandler(APIHandler):
    """Usage report for the token's user; ``?user=NAME`` with that user's ``read:users``;
    ``?all=1`` (``&format=csv``) with ``read:users`` and ``read:servers`` on everyone."""

    async def get(self) -> None:
        if self.get_argument("all", "") not in ("", "0"):
            self.platform()
            return
        caller = per_user_caller(self, "Usage")
        target = caller
        wanted = self.get_argument("user", None)
        if wanted and wanted != caller.name:
            target = self.find_user(wanted)
            if target is None:
                if self.has_scope("read:users"):
                    raise web.HTTPError(404, f"No such user: {wanted}")
                raise web.HTTPError(403, "Only admins may read another user's usage")
        if not self.has_scope(f"read:users!user={target.name}"):
            if target is not caller:
                raise web.HTTPError(403, "Only admins may read another user's usage")
            raise web.HTTPError(
                403, f"This token lacks the scope read:users for {target.name} (its usage)"
            )
        policy = load_policy(self.settings["config"], self.settings["spawner_class"])
        applicant = Applicant(target.name, groups=tuple(sorted(g.name for g in target.groups)))
        hours = GpuAccounting(self.db).hours_this_week
        report = usage_report(policy, Ledger.shared(), applicant, hours)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(report))

    def platform(self) -> None:
        missing = [s for s in ALL_SCOPES if not self.has_scope(s)]
        if self.current_user is None:
            raise web.HTTPError(403, "Authentication required (an admin's token)")
        if missing:
            raise web.HTTPError(
                403, f"The whole platform's usage needs the scopes {', '.join(ALL_SCOPES)} on "
                f"every user (admins); this token lacks {', '.join(missing)}",
            )  # fmt: skip
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, f"format must be json or csv, not {fmt[:20]!r}")
        usage = current_usage(self.db, self.users.values(), self.settings["config"],
                              self.settings["spawner_class"])  # fmt: skip
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="dsplatform-usage.csv"')
            self.write(usage.servers_csv())
            return
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(usage.to_json()))
