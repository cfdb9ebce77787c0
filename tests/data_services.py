"""Fixtures and checks shared by the data-core tests: DataServices over real DVC registries
(``DSDATA_REGISTRIES``), one shared cache per test, and what a sound cache looks like."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from server_ext.core import DataService

from .registries import Registry

OBJECT_NAME = re.compile(r"^[0-9a-f]{30}(\.dir)?$")


@pytest.fixture(name="cache_dir")
def cache_dir_fixture(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(name="make_service")
def make_service_fixture(
    registry: Registry, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DataService]:
    """``make_service(name)``: a DataService for workspace ``tmp_path/name``, shared cache."""
    monkeypatch.setenv("DSDATA_REGISTRIES", registry.url)
    monkeypatch.setenv("DSDATA_CACHE_DIR", os.fspath(cache_dir))
    monkeypatch.delenv("DSDATA_CATALOG_URL", raising=False)
    monkeypatch.delenv("DSPLATFORM_WORKSPACE", raising=False)

    def make(name: str = "ws") -> DataService:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        return DataService(root=root)

    return make


@pytest.fixture(name="service")
def service_fixture(make_service: Callable[..., DataService]) -> DataService:
    return make_service()


def snapshot_dir(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones too) with its bytes: None for directories."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def assert_cache_sound(cache_dir: Path) -> None:
    """Every object stored under its final name has exactly the content its name says."""
    for path in (cache_dir / "files" / "md5").glob("*/*"):
        name = path.name
        if not OBJECT_NAME.match(name):
            continue  # DVC's own temp files, never looked up
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        assert path.parent.name + name.removesuffix(".dir") == md5, f"corrupt object {path}"


def version_hash(service: DataService, name: str, version: str) -> str:
    for detail in service.info(name).versions:
        if detail.version == version:
            return detail.content_hash
    raise AssertionError(f"no {name}@{version}")
