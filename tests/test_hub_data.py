"""Datasets through the real hub: the catalog per group, pulls in a sandbox, preload."""

from __future__ import annotations

import json

import pytest

from .hub import HubProcess
from .registries import Registry, dvc_site_cache_fixture, gto_registry_fixture  # noqa: F401
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


def test_a_gto_registry_through_the_hub(
    tmp_path_factory: pytest.TempPathFactory, gto_registry: Registry
) -> None:
    """The catalog service reads a registry made with the gto CLI as GTO does; a sandbox
    pulls a single file and a nested artifact through it (names with ':' in its URLs)."""
    from .conftest import TEST_POLICY

    state = tmp_path_factory.mktemp("gto-hub")
    hub = HubProcess(
        state,
        TEST_POLICY
        + f"c.DatasetCatalog.registries = [{gto_registry.url!r}]\n"
        + "c.ProfileSpawner.profiles[0]['datasets'] = ['table@prod']\n",
    ).start()
    try:
        r = hub.api("GET", "/dsplatform/datasets", token=hub.token_for("erin"))
        assert r.status_code == 200, r.text
        listed = {d["name"]: d for d in r.json()["datasets"]}
        assert sorted(listed) == ["broken", "images", "sub:feats", "table"]
        assert listed["table"]["stages"] == {"prod": "v1.0.0"} and listed["broken"]["error"]
        assert hub.spawn("erin", "", {"profile": "cpu-small"}).status_code in (201, 202)
        hub.wait_ready("erin", "")
        workspace = hub.state / "platform" / "users" / "erin"
        assert (workspace / "data" / "table.csv").read_bytes() == b"a,b\n1,2\n"  # preloaded
        out = run_in_kernel(
            hub,
            "erin",
            "",
            "from server_ext import dsdata\n"
            "a = dsdata.pull('table', 'data/rc.csv'); b = dsdata.pull('sub:feats')\n"
            "print(a.path, a.version, open(a.path).read().replace(chr(10), '|'))\n"
            "print(b.path, b.version, open(b.path).read().replace(chr(10), '|'))\n"
            "print(sorted((d['name'], d['stages'], bool(d['error'])) "
            "for d in dsdata.list_datasets()))\n",
        )
        lines = out.strip().splitlines()
        assert lines[0] == "data/rc.csv v1.1.0-rc.1 a,b|1,2|3,4|", out
        assert lines[1] == "data/feats.csv v1.0.0 f|0.5|", out
        assert lines[2] == (
            "[('broken', {}, True), ('images', {'dev': 'v1.0.0'}, False), "
            "('sub:feats', {}, False), ('table', {'prod': 'v1.0.0'}, False)]"
        ), out
    finally:
        hub.shutdown()
