"""Calls from a sandbox to the platform's catalog service, with the sandbox's hub token.

The catalog's API lives beside its dataset listing (``DSDATA_CATALOG_URL`` is
``…/services/catalog/api/datasets``). Its errors come back as :class:`DsdataError` with the
catalog's own status and message, so the fronts show what the catalog said.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from .errors import DsdataError, RegistryUnavailable


class CatalogError(DsdataError):
    """The catalog's answer was an error (its status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def catalog_api(env: dict[str, str] | None = None) -> str:
    """The catalog's ``…/api`` URL in this sandbox, or a clear error outside a platform."""
    url = (os.environ if env is None else env).get("DSDATA_CATALOG_URL", "")
    if "/api/datasets" not in url:
        raise RegistryUnavailable(
            "This sandbox has no catalog service (DSDATA_CATALOG_URL): model promotions and "
            "the platform's dataset fetch need it"
        )
    return url.rsplit("/datasets", 1)[0]


def open_url(method: str, url: str, body: Any = None, timeout: float = 60.0,
             what: str = "the platform's catalog service") -> Any:  # fmt: skip
    """An open response for ``method url`` (JSON ``body``), or :class:`CatalogError`."""
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, method=method, data=data)
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if token:
        request.add_header("Authorization", f"token {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise CatalogError(e.code, error_message(e)) from None
    except (urllib.error.URLError, OSError) as e:
        raise RegistryUnavailable(f"Cannot reach {what}: {e}") from None


def call(method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
    """``method`` the catalog API's ``path`` (below ``…/api/``); its JSON answer."""
    with open_url(method, f"{catalog_api()}/{path.lstrip('/')}", body, timeout) as response:
        return json.load(response)


def error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["message"])
    except (ValueError, KeyError, OSError, TypeError):
        return f"{error.code} {error.reason}"
