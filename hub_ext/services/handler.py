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


DEFAULT_MAX_BODY = 16 << 20  # the web.Application setting "max_body_bytes" overrides it
DISCARD_AT_MOST = 1 << 30  # a larger declared body is not read: the connection is closed


@web.stream_request_body
class HubServiceHandler(HubOAuthenticated, web.RequestHandler):
    """A handler of a hub-managed service: the hub user (token or OAuth cookie) as
    ``current_user``; errors as ``{"message": ..., "error_code": ...}`` with the reason.

    Bodies stream in and are kept up to the application's ``max_body_bytes``. A larger one
    is read to its end and dropped, and the handler's :meth:`check_body` answers 413 with
    the limit: answering before the body is read would close the connection under a
    proxy still sending it, which then shows its own 503 page. Handlers read :attr:`body`.
    """

    _body: bytearray | None = None  # after prepare(): None once the body is refused

    @property
    def body_limit(self) -> int:
        return int(self.settings.get("max_body_bytes", DEFAULT_MAX_BODY))

    @property
    def body(self) -> bytes:
        """The request body (complete once the HTTP method runs)."""
        return bytes(self._body or b"")

    def prepare(self) -> None:
        self._body = bytearray()
        declared = self.request.headers.get("Content-Length", "")
        length = int(declared) if declared.isascii() and declared.isdigit() else 0
        if length > self.body_limit:
            self._body = None
            if length <= DISCARD_AT_MOST and self.request.connection is not None:
                self.request.connection.set_max_body_size(length)  # type: ignore[attr-defined]

    def check_body(self) -> None:
        """413 for a body over the limit (call before using :attr:`body`)."""
        if self._body is None:
            raise web.HTTPError(
                413,
                f"The request body is over this service's limit: at most {self.body_limit} bytes",
            )

    def data_received(self, chunk: bytes) -> None:
        if self._body is None:
            return  # refused: read and dropped
        self._body.extend(chunk)
        if len(self._body) > self.body_limit:  # a chunked body without a Content-Length
            self._body = None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (
            exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        )
        code = getattr(exc, "error_code", None) or ERROR_CODES.get(status_code, "INTERNAL_ERROR")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "error_code": code}))
