"""``python -m server_ext.preload``: a profile's datasets pulled before the sandbox opens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)

Preload = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def preload(registry: Registry, tmp_path: Path, workspace: Path, dvc_site_cache: Path) -> Preload:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DSDATA_CATALOG_URL", "DSPLATFORM_WORKSPACE", "DSPLATFORM_DATASETS")
        }
        environ.update(
            DSDATA_REGISTRIES=registry.url,
            DSDATA_CACHE_DIR=os.fspath(tmp_path / "cache"),
            DVC_SITE_CACHE_DIR=os.fspath(dvc_site_cache),
        )
        environ.update(env)
        return subprocess.run(
            [sys.executable, "-m", "server_ext.preload", *args],
            cwd=workspace,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def lineage(workspace: Path) -> list[dict[str, str]]:
    return list(json.loads((workspace / ".dsdata" / "lineage.json").read_text())["pulls"])


def test_preload_from_arguments(preload: Preload, workspace: Path, registry: Registry) -> None:
    done = preload("iris@v1", "--root", os.fspath(workspace))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "preload: iris@v1.1.0 -> data/iris\n"
    assert md5_tree(workspace / "data" / "iris") == expected_tree(release("iris", "v1.1.0"))
    [record] = lineage(workspace)
    assert (record["dataset"], record["version"], record["path"]) == ("iris", "v1.1.0", "data/iris")
    assert record["rev"] == registry.rev("iris@v1.1.0")


def test_preload_from_the_environment(preload: Preload, workspace: Path) -> None:
    done = preload(DSPLATFORM_DATASETS="iris@v1.0.0, multi ,")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "preload: iris@v1.0.0 -> data/iris",
        "preload: multi@v1.0.0 -> data/multi",
    ]
    assert md5_tree(workspace / "data" / "iris") == expected_tree(release("iris", "v1.0.0"))
    assert md5_tree(workspace / "data" / "multi") == expected_tree(release("multi", "v1.0.0"))
    assert [(r["dataset"], r["version"]) for r in lineage(workspace)] == [
        ("iris", "v1.0.0"),
        ("multi", "v1.0.0"),
    ]


def test_preload_of_nothing_does_nothing(preload: Preload, workspace: Path) -> None:
    done = preload()
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert os.listdir(workspace) == []


def test_a_failing_dataset_exits_1_and_says_why(preload: Preload, workspace: Path) -> None:
    done = preload("iris@v9", "multi", "../etc")
    assert done.returncode == 1
    assert done.stdout == "preload: multi@v1.0.0 -> data/multi\n"  # the others still come
    assert done.stderr.splitlines() == [
        "preload: iris@v9: iris has no version v9; versions: v1.0.0, v1.1.0, v2.0.0",
        "preload: ../etc: Invalid dataset name '../etc': use a GTO artifact name like 'iris' "
        "or 'sub/dir:iris' (letters, digits, '-', '_' and '/')",
    ]
    assert sorted(os.listdir(workspace / "data")) == ["multi"]


def test_unreachable_registry_exits_1(preload: Preload, workspace: Path, tmp_path: Path) -> None:
    done = preload("iris", DSDATA_REGISTRIES=os.fspath(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert done.stderr.startswith("preload: iris: Cannot read data registry")
    assert os.listdir(workspace) == []


def test_an_unchanged_copy_is_replaced_a_changed_one_kept(
    preload: Preload, workspace: Path
) -> None:
    assert preload("iris@v1.0.0").returncode == 0
    done = preload("iris@v2")
    assert (done.returncode, done.stdout) == (0, "preload: iris@v2.0.0 -> data/iris\n")
    assert md5_tree(workspace / "data" / "iris") == expected_tree(release("iris", "v2.0.0"))

    csv = workspace / "data" / "iris" / "iris.csv"
    csv.write_text("my edits\n")
    done = preload("iris@v1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("preload: kept your changed copy of iris (")
    assert csv.read_text() == "my edits\n"
    assert [r["version"] for r in lineage(workspace)] == ["v1.0.0", "v2.0.0"]
