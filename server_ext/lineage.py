"""``.dsdata/lineage.json`` at the project root: every pull, for status and commit."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from .locks import file_lock

LINEAGE = Path(".dsdata") / "lineage.json"


def find_project_root(start: Path | None = None) -> Path:
    """``$DSPLATFORM_WORKSPACE`` if set, else the nearest ancestor with ``.dsdata`` or
    ``.git``, else the current directory."""
    env = os.environ.get("DSPLATFORM_WORKSPACE")
    here = (start or Path.cwd()).resolve()
    if env and (here == Path(env).resolve() or Path(env).resolve() in here.parents):
        return Path(env).resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".dsdata").is_dir() or (candidate / ".git").exists():
            return candidate
    return here


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Lineage:
    """Append-only record of pulls; the newest record per path is that path's state."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / LINEAGE

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path.parent / "lineage.lock")

    def records(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        pulls: list[dict[str, Any]] = data.get("pulls", [])
        return pulls

    def current(self) -> dict[str, dict[str, Any]]:
        """path -> newest record."""
        latest: dict[str, dict[str, Any]] = {}
        for record in self.records():
            latest[record["path"]] = record
        return latest

    def record(self, entry: dict[str, Any]) -> None:
        with self._locked():
            pulls = self.records()
            pulls.append(entry)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": 1, "pulls": pulls}, indent=2) + "\n")
            os.replace(tmp, self.path)
