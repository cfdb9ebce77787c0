"""``/dsdata/api/`` through pytest-jupyter's ``jp_fetch``: the API's path and its JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

API = ("dsdata", "api")


def body(response: HTTPResponse) -> Any:
    return json.loads(response.body)


async def error_of(fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a request that must fail (errors are JSON, always)."""
    with pytest.raises(HTTPClientError) as raised:
        await fetch(*API, *parts, **kwargs)
    response = raised.value.response
    assert response is not None
    assert response.headers["Content-Type"].startswith("application/json")
    return raised.value.code, json.loads(response.body)


def dsdata_server_config(
    monkeypatch: pytest.MonkeyPatch, registries: str, cache: Path
) -> dict[str, Any]:
    """jupyter-server with the extension on, reading ``registries`` (set before it starts):
    what a ``jp_server_config`` fixture returns."""
    monkeypatch.setenv("DSDATA_REGISTRIES", registries)
    monkeypatch.setenv("DSDATA_CACHE_DIR", os.fspath(cache))
    monkeypatch.delenv("DSDATA_CATALOG_URL", raising=False)
    monkeypatch.delenv("DSPLATFORM_WORKSPACE", raising=False)
    return {"ServerApp": {"jpserver_extensions": {"server_ext": True}}}
