"""The data core as plain Python functions: ``from server_ext import dsdata``.

Examples:
    >>> from server_ext import dsdata
    >>> dsdata.pull("iris@v1")            # into data/iris of the current project
    >>> dsdata.status()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core import DataService, ProgressCallback, PullResult


def service(root: Path | None = None) -> DataService:
    """A :class:`DataService` for the project containing ``root`` (default: cwd)."""
    return DataService(root=root)


def list_datasets() -> list[dict[str, Any]]:
    """Datasets you may pull, with their versions."""
    return service().list_datasets()


def info(name: str) -> dict[str, Any]:
    """A dataset's description, source and versions (size, files, content hash)."""
    return service().info(name)


def pull(
    dataset: str,
    path: str | None = None,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PullResult:
    """Fetch ``NAME[@VERSION]`` into ``path`` (default ``data/NAME``), atomically.

    Raises:
        server_ext.errors.DsdataError: with a message saying what to do.
    """
    return service().pull(dataset, path, force=force, on_progress=on_progress)


def status() -> list[dict[str, Any]]:
    """Each pulled dataset, where it is, and whether it changed since the pull."""
    return service().status()
