"""One advisory file lock (flock) for the cache, the workspace and the lineage file."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, mode: int = 0o644) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with ``mode``); released if we die."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    with contextlib.suppress(OSError):  # the umask must not narrow a shared lock's mode
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
