"""The base of the hub services' handlers (catalog, MLflow UI route): hub login, JSON errors."""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

# MLflow's error codes (mlflow.protos.databricks_pb2.ErrorCode) by HTTP status, so clients of
# MLflow's scoring protocol read the catalog's errors as they read MLflow's own
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    413: "REQUEST_LIMIT_EXCEEDED",
    429: "REQUEST_LIMIT_EXCEEDED",
    502: "TEMPORARILY_UNAVAILABLE",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class CodedError(web.HTTPError):
    """An HTTP error with MLflow's ``error_code`` named explicitly."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(status, message)
        self.error_code = error_code


class HubServiceHandler(HubOAuthenticated, web.RequestHandler):
    """A handler of a hub-managed service: the hub user (token or OAuth cookie) as
    ``current_user``; errors as ``{"message": ..., "error_code": ...}`` with the reason."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (
            exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        )
        code = getattr(exc, "error_code", None) or ERROR_CODES.get(status_code, "INTERNAL_ERROR")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "error_code": code}))
