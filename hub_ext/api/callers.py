"""Who calls a hub API handler: the per-user APIs refuse anonymous and service callers."""

from __future__ import annotations

from typing import Any

from jupyterhub import orm
from tornado import web


def per_user_caller(handler: Any, what: str) -> Any:
    """The calling hub user, or an HTTP error saying why ``what`` cannot answer."""
    caller = handler.current_user
    if caller is None:
        raise web.HTTPError(403, "Authentication required (a user token or login cookie)")
    if isinstance(caller, orm.Service):
        raise web.HTTPError(400, f"{what} is per user: call with a user's token")
    return caller
