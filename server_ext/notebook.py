"""The notebooks of a project kept fresh for ``%dsdata commit`` (kernel side).

A commit records the project's files, but cells run in the browser live in the frontend
until the notebook is saved: committing then would record a stale (often empty) notebook.
Each sandbox kernel knows which notebook it serves (jupyter-server's ``JPY_SESSION_NAME``)
and when its cells finished (IPython's ``post_run_cell``); it writes both to a small
record in the user's Jupyter runtime directory (``dsplatform-kernels/<pid>.json``), so the
kernel that commits sees every live kernel's notebook, not just its own. When a cell of a
notebook inside the project finished after that file was last written, :func:`ensure_saved`
asks the frontend to save (a display of :data:`SAVE_MIME`, which the dsplatform
labextension renders by saving every unsaved document) and waits for the files to be
written; without a frontend that does, the commit is refused with what to save.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidReference

SAVE_MIME = "application/vnd.dsplatform.save-documents+json"
SAVE_TIMEOUT = 20.0  # seconds to wait for the frontend's save

_finished: list[float] = []  # when each cell of this kernel finished
_forgetting: list[Callable[[], None]] = []  # the atexit hook, once registered


@dataclass(frozen=True)
class Unsaved:
    """A notebook whose kernel finished a cell after the file was last written."""

    path: Path
    finished: float  # when that kernel's last cell finished

    def saved(self) -> bool:
        return self.path.stat().st_mtime > self.finished


def records_dir() -> Path:
    """Where this user's kernels record their notebook (the Jupyter runtime directory)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "dsplatform-kernels"


def record_finished(*_: Any) -> None:
    """IPython ``post_run_cell`` hook: note the time, and tell the other kernels."""
    now = time.time()
    _finished.append(now)
    path = notebook_file()
    if path is None:
        return
    with contextlib.suppress(OSError):  # never fail a cell for its record
        folder = records_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = folder / f"{os.getpid()}.json"
        if not _forgetting:
            _forgetting.append(atexit.register(_forget))
        partial = record.with_suffix(".tmp")
        partial.write_text(json.dumps({"notebook": os.fspath(path), "finished": now}))
        os.replace(partial, record)


def notebook_file() -> Path | None:
    """The ``.ipynb`` this kernel runs for, when jupyter-server started it for one."""
    name = os.environ.get("JPY_SESSION_NAME", "")
    if not name.endswith(".ipynb"):
        return None
    path = Path.cwd() / Path(name).name  # kernels start in their notebook's directory
    return path.resolve() if path.is_file() else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still one of this user's kernels (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another account's process
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        return b"kernel" in cmdline.read_bytes()
    return True


def _forget() -> None:
    """``atexit``: this kernel no longer holds unsaved work."""
    with contextlib.suppress(OSError):
        (records_dir() / f"{os.getpid()}.json").unlink()


def _other_kernels() -> list[Unsaved]:
    """What the other live kernels of this user recorded (stale records are removed)."""
    found = []
    folder = records_dir()
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            pid = int(record.stem)
            data = json.loads(record.read_text())
            entry = Unsaved(Path(data["notebook"]), float(data["finished"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid():
            continue
        if not _alive(pid):
            with contextlib.suppress(OSError):
                record.unlink()
            continue
        found.append(entry)
    return found


def unsaved_notebooks(root: Path) -> list[Unsaved]:
    """Notebooks inside ``root`` with cells that finished after the file was written:
    this kernel's own first, then the other live kernels' (by path)."""
    root = root.resolve()
    candidates = []
    own = notebook_file()
    if own is not None and _finished:
        candidates.append(Unsaved(own, max(_finished)))
    candidates += _other_kernels()
    unsaved: dict[Path, Unsaved] = {}
    for entry in candidates:
        try:
            inside = entry.path == root or root in entry.path.parents
            if inside and entry.path.is_file() and not entry.saved():
                unsaved.setdefault(entry.path, entry)
        except OSError:  # deleted or unreadable meanwhile: nothing to save
            continue
    return list(unsaved.values())


def ensure_saved(
    show: Callable[[dict[str, Any]], None],
    root: Path | None = None,
    timeout: float | None = None,
) -> list[Path]:
    """Have the frontend save the project's notebooks whose cells ran since they were written.

    ``show`` displays a MIME bundle in the cell's output (the frontend reacts to it);
    ``root`` is the project (default: the current directory). Returns the notebooks saved
    (empty when nothing needed saving).

    Raises:
        InvalidReference: still unsaved after ``timeout`` seconds (nothing was committed).
    """
    root = root or Path.cwd()
    pending = unsaved_notebooks(root)
    if not pending:
        return []
    names = [_relative(entry.path, root) for entry in pending]
    show(
        {
            SAVE_MIME: {"reason": "commit", "notebook": names[0], "notebooks": names},
            "text/plain": f"Saving {', '.join(names)} (and other unsaved documents) "
            "for the commit…",
        }
    )
    if timeout is None:  # DSDATA_SAVE_TIMEOUT: seconds to wait for the frontend's save
        timeout = float(os.environ.get("DSDATA_SAVE_TIMEOUT") or SAVE_TIMEOUT)
    deadline = time.monotonic() + timeout
    while True:
        left = [entry for entry in pending if not entry.saved()]
        if not left:
            return [entry.path for entry in pending]
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    own = notebook_file()
    what = "; ".join(
        f"{_relative(entry.path, root)} has changes that are not saved (cells ran after it "
        f"was last saved at "
        f"{dt.datetime.fromtimestamp(entry.path.stat().st_mtime).strftime('%H:%M:%S')})"
        for entry in left
    )
    drop = (
        " To drop another notebook's changes instead, shut down its kernel."
        if any(entry.path != own for entry in left)
        else ""
    )
    raise InvalidReference(
        f"{what}: save {'it' if len(left) == 1 else 'them'} (File > Save Notebook, Ctrl+S) "
        f"and run %dsdata commit again.{drop} Nothing was committed."
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return os.fspath(path.relative_to(root.resolve()))
    except ValueError:
        return os.fspath(path)
