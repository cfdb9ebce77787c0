"""Datasets through the real hub: the catalog per group, pulls in a sandbox, preload."""

from __future__ import annotations

import json

import pytest

from .hub import HubProcess
from .test_hub_spawn import run_in_kernel

pytestmark = pytest.mark.hub


def names(hub: HubProcess, user: str) -> list[str]:
    r = hub.api("GET", "/dsplatform/datasets", token=hub.token_for(user))
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json()["datasets"])


def test_catalog_is_filtered_by_group(hub: HubProcess) -> None:
    assert names(hub, "alice") == ["churn", "iris"]  # alice is in ml-research
    assert names(hub, "erin") == ["iris"]
    iris = next(
        d
        for d in hub.api("GET", "/dsplatform/datasets", token=hub.token_for("erin")).json()[
            "datasets"
        ]
        if d["name"] == "iris"
    )
    assert iris["versions"] == ["v1.0.0", "v2.0.0"] and iris["latest"] == "v2.0.0"
    assert hub.api("GET", "/dsplatform/datasets", token="not-a-token").status_code == 403


def test_sandbox_preloads_pulls_and_cannot_see_restricted(clean_hub: HubProcess) -> None:
    hub = clean_hub
    assert hub.spawn("erin", "data", {"profile": "cpu-small"}).status_code in (201, 202)
    hub.wait_ready("erin", "data")
    workspace = hub.state / "platform" / "users" / "erin"
    # preloaded before the server started (profile datasets: iris@v1)
    assert (workspace / "data" / "iris" / "iris.csv").read_text().startswith("sepal_length_cm")
    lineage = json.loads((workspace / ".dsdata" / "lineage.json").read_text())
    assert [(p["dataset"], p["version"]) for p in lineage["pulls"]] == [("iris", "v1.0.0")]

    out = run_in_kernel(
        hub,
        "erin",
        "data",
        "from server_ext import dsdata\n"
        "print(sorted(d['name'] for d in dsdata.list_datasets()))\n"
        "r = dsdata.pull('iris@v2', 'data/iris2')\n"
        "print(r.version, sorted(p.name for p in (__import__('pathlib').Path('data/iris2')).iterdir()))\n"
        "%dsdata pull churn\n",
    )
    lines = out.strip().splitlines()
    assert lines[0] == "['iris']"
    assert lines[1] == "v2.0.0 ['iris.csv', 'test.csv', 'train.csv']"
    assert "No dataset 'churn' in your catalog; available: iris" in lines[-1]
    assert not (workspace / "data" / "churn").exists()

    # the second pull of iris@v1 by another user comes from the shared cache
    assert hub.spawn("alice", "data", {"profile": "cpu-small"}).status_code in (201, 202)
    hub.wait_ready("alice", "data")
    out = run_in_kernel(
        hub,
        "alice",
        "data",
        "from server_ext import dsdata\nr = dsdata.pull('iris@v1', 'data/again')\n"
        "print(r.from_cache, r.downloaded_objects)",
    )
    assert out.strip() == "True 0"
