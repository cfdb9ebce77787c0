"""The platform overview from the running hub: its ledger, its servers' states, its database
(GPU sessions, groups). Shared by the admin usage API and page and the hub's metrics."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from jupyterhub import orm
from sqlalchemy.orm import Session

from hub_ext.admission.accounting import GpuAccounting
from hub_ext.admission.overview import PlatformUsage, platform_usage
from hub_ext.admission.policy import load_policy
from hub_ext.admission.reservations import Ledger


def server_states(users: Iterable[Any]) -> dict[tuple[str, str], str]:
    """``(user, server) -> running|pending`` of the hub's loaded users' spawners."""
    states = {}
    for user in users:
        for name, spawner in getattr(user, "spawners", {}).items():
            if spawner.pending:
                states[(user.name, name)] = "pending"
            elif spawner.ready:
                states[(user.name, name)] = "running"
    return states


def current_usage(
    db: Session, users: Iterable[Any], config: Any, spawner_class: Any
) -> PlatformUsage:
    """The overview now (one query for the week's GPU sessions, one for the groups)."""
    policy = load_policy(config, spawner_class)
    hours = GpuAccounting(db).hours_by_user_this_week()
    members = {g.name: sorted(u.name for u in g.users) for g in db.query(orm.Group)}
    grants = Ledger.shared().grants()
    return platform_usage(policy, grants, server_states(users), hours, members, time.time())
