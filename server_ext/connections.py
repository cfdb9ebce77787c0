"""The lake and the warehouse from a sandbox: the platform's catalog browses and imports
(it holds the credentials; the sandbox never does), and an import becomes an ordinary
dataset version: list, pull, preload, commit lineage, reproduce.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalog_client import CatalogError, call, catalog_api, open_url
from .errors import InvalidReference

IMPORT_TIMEOUT = 3600.0  # seconds between two progress lines at most (a long query)


@dataclass(frozen=True)
class ImportResult:
    """A finished import: the dataset version it is (``created`` False: the source had not
    changed since that version) and its lineage."""

    dataset: str
    version: str
    created: bool
    lineage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "version": self.version, "created": self.created,
                "lineage": self.lineage}  # fmt: skip


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def connections() -> list[dict[str, Any]]:
    """The connections your groups may use."""
    found: list[dict[str, Any]] = call("GET", "connections")["connections"]
    return found


def browse(name: str, prefix: str = "") -> dict[str, Any]:
    """Objects and sizes under ``prefix`` (S3), or tables and columns (SQL)."""
    query = urllib.parse.urlencode({"prefix": prefix})
    found: dict[str, Any] = call("GET", f"connections/{_quoted(name)}/browse?{query}")
    return found


def parse_source(source: str, query: str | None) -> tuple[str, str]:
    """``CONN:PATH`` (S3) or ``CONN`` (with a query) -> (connection, path)."""
    name, sep, path = source.partition(":")
    if not name:
        raise InvalidReference(f"{source!r} is not CONN:PATH or CONN")
    if query and path:
        raise InvalidReference("Give a path (CONN:PATH) or a query (CONN --query SQL), not both")
    if not query and not sep:
        raise InvalidReference(f"Import what from {name!r}? CONN:PATH for the lake, "
                               "CONN --query SQL for the warehouse")  # fmt: skip
    return name, path


def import_data(
    source: str,
    *,
    as_name: str,
    query: str | None = None,
    params: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> ImportResult:
    """Import ``CONN:PATH`` or ``CONN`` + ``query`` as a new version of dataset ``as_name``."""
    name, path = parse_source(source, query)
    body: dict[str, Any] = {"as": as_name}
    if query:
        body.update(query=query, params=params or {})
    else:
        body["path"] = path
    url = f"{catalog_api()}/connections/{_quoted(name)}/imports"
    with open_url("POST", url, body, timeout=IMPORT_TIMEOUT) as response:
        last: dict[str, Any] = {}
        for line in response:
            last = json.loads(line)
            if "progress" in last and on_progress is not None:
                on_progress(last["progress"])
    if "done" in last:
        done = last["done"]
        return ImportResult(done["dataset"], done["version"], bool(done["created"]),
                            dict(done.get("lineage") or {}))  # fmt: skip
    error = last.get("error") or {"message": "The import stopped without an answer", "status": 502}
    raise CatalogError(int(error.get("status", 502)), str(error["message"]))
