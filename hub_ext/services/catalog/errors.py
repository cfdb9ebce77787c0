"""The catalog's domain error: what the promotion flow, the registry and the gateway refuse,
with the HTTP status and MLflow error code it maps to (in one place,
:meth:`hub_ext.services.catalog.handlers.CatalogHandler.write_error`)."""

from __future__ import annotations

from hub_ext.services.handler import ERROR_CODES


class CatalogError(Exception):
    """A refused or failed catalog request; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.error_code = error_code or ERROR_CODES.get(status, "INTERNAL_ERROR")
