"""The base of the hub services' handlers (catalog, MLflow UI route): hub login, JSON errors."""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web


class HubServiceHandler(HubOAuthenticated, web.RequestHandler):
    """A handler of a hub-managed service: the hub user (token or OAuth cookie) as
    ``current_user``; errors as ``{"message": ...}`` with the reason given."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (
            exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        )
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))
