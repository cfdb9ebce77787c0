"""The notebook a kernel runs in, kept fresh for ``%dsdata commit`` (kernel side).

A commit records the project's files, but cells run in the browser live in the frontend
until the notebook is saved: committing then would record a stale (often empty) notebook.
The kernel knows which notebook it serves (jupyter-server's ``JPY_SESSION_NAME``) and when
its cells finished (IPython's ``post_run_cell``). When a cell finished after the file was
last written, :func:`ensure_saved` asks the frontend to save (a display of
:data:`SAVE_MIME`, which the dsplatform labextension renders by saving every unsaved
document) and waits for the file to be written; without a frontend that does, the commit
is refused with what to save.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InvalidReference

SAVE_MIME = "application/vnd.dsplatform.save-documents+json"
SAVE_TIMEOUT = 20.0  # seconds to wait for the frontend's save

_finished: list[float] = []  # when each cell of this kernel finished


def record_finished(*_: Any) -> None:
    """IPython ``post_run_cell`` hook."""
    _finished.append(time.time())


def notebook_file() -> Path | None:
    """The ``.ipynb`` this kernel runs for, when jupyter-server started it for one."""
    name = os.environ.get("JPY_SESSION_NAME", "")
    if not name.endswith(".ipynb"):
        return None
    path = Path.cwd() / Path(name).name  # kernels start in their notebook's directory
    return path if path.is_file() else None


def unsaved_since(path: Path) -> float | None:
    """When the last cell finished, if that was after ``path`` was last written."""
    last = max(_finished, default=None)
    return last if last is not None and last > path.stat().st_mtime else None


def ensure_saved(
    show: Callable[[dict[str, Any]], None],
    timeout: float | None = None,
) -> Path | None:
    """Have the frontend save this kernel's notebook if cells ran since it was written.

    ``show`` displays a MIME bundle in the cell's output (the frontend reacts to it).
    Returns the notebook saved, or None when nothing needed saving.

    Raises:
        InvalidReference: still unsaved after ``timeout`` seconds (nothing was committed).
    """
    path = notebook_file()
    if path is None:
        return None
    last = unsaved_since(path)
    if last is None:
        return None
    show(
        {
            SAVE_MIME: {"reason": "commit", "notebook": path.name},
            "text/plain": f"Saving {path.name} (and other unsaved documents) for the commit…",
        }
    )
    if timeout is None:  # DSDATA_SAVE_TIMEOUT: seconds to wait for the frontend's save
        timeout = float(os.environ.get("DSDATA_SAVE_TIMEOUT") or SAVE_TIMEOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.stat().st_mtime > last:
            return path
        time.sleep(0.1)
    saved = dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%H:%M:%S")
    raise InvalidReference(
        f"{path.name} has changes that are not saved (cells ran after it was last saved at "
        f"{saved}): save it (File > Save Notebook, Ctrl+S) and run %dsdata commit again. "
        "Nothing was committed."
    )
