"""Connections through the real hub: the catalog lists, browses and imports for members of
the connection's groups only; from a sandbox kernel the lake (moto's S3 server) and the
warehouse (PostgreSQL) become ordinary datasets; no credential ever reaches a sandbox, its
files, its kernel output, the REST answers or the logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .connections import (  # noqa: F401  (fixtures)
    DWH_PASSWORD,
    LAKE_KEY,
    LAKE_SECRET,
    Lake,
    Warehouse,
    connections_config,
    lake_fixture,
    postgres_fixture,
    secrets_env,
    warehouse_fixture,
)
from .hub import HubProcess
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
SECRETS = (LAKE_SECRET, DWH_PASSWORD, LAKE_KEY)


@pytest.fixture(scope="module")
def chub(
    tmp_path_factory: pytest.TempPathFactory, lake: Lake, warehouse: Warehouse
) -> Iterator[HubProcess]:
    site = (
        TEST_POLICY
        + f"c.DataConnections.connections = {connections_config(lake)!r}\n"
        + (
            # an imported dataset preloaded like any other (it exists once the test imported it)
            'c.ProfileSpawner.profiles.append({"slug": "clicks", "toolchain": "scipy", '
            '"cpu": {"default": 0.5, "max": 1}, "memory": {"default": "512M", "max": "1G"}, '
            '"groups": ["ml-research"], "datasets": ["clicks@v1"]})\n'
        )
    )
    hub = HubProcess(tmp_path_factory.mktemp("connections-hub"), site,
                     env=secrets_env(lake, warehouse)).start()  # fmt: skip
    try:
        for user in ("alice", "erin"):
            r = hub.spawn(user, "", {"profile": "cpu-small"})
            assert r.status_code in (201, 202), r.text
            hub.wait_ready(user, timeout=120)
        yield hub
    finally:
        hub.shutdown()


def catalog(
    hub: HubProcess, method: str, path: str, user: str, body: Any = None
) -> requests.Response:
    return requests.request(method, f"{hub.url}/services/catalog/api/{path}", json=body,
                            headers={"Authorization": f"token {hub.token_for(user)}"},
                            timeout=120)  # fmt: skip


def no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_only_the_connections_groups_see_and_use_it(chub: HubProcess) -> None:
    r = catalog(chub, "GET", "connections", "alice")
    assert r.status_code == 200, r.text
    by_name = {c["name"]: c for c in r.json()["connections"]}
    assert sorted(by_name) == ["dwh", "lake"]
    assert by_name["lake"] == {"name": "lake", "type": "s3", "bucket": "raw",
                                          "prefix": "events/", "description": "Raw click events"}  # fmt: skip
    no_secret_in(r.text)
    assert "LAKE" not in r.text and "DWH_URL" not in r.text  # not even the variables' names
    assert catalog(chub, "GET", "connections", "erin").json() == {"connections": []}
    for method, path, body in (
        ("GET", "connections/lake/browse", None),
        ("GET", "connections/dwh/browse", None),
        ("POST", "connections/lake/imports", {"as": "stolen", "path": "2026-11/"}),
    ):
        r = catalog(chub, method, path, "erin", body)
        assert r.status_code == 403 and "may not use" in r.json()["message"], r.text
    assert catalog(chub, "GET", "connections/nope/browse", "alice").status_code == 404

    lake = catalog(chub, "GET", "connections/lake/browse", "alice").json()
    assert lake["prefixes"] == ["2026-11/"] and lake["objects"][0]["key"] == "other.txt"
    sub = catalog(chub, "GET", "connections/lake/browse?prefix=2026-11/", "alice").json()
    assert [o["key"] for o in sub["objects"]] == [f"2026-11/day{d}.json" for d in (1, 2, 3)]
    dwh = catalog(chub, "GET", "connections/dwh/browse", "alice").json()
    [table] = [t for t in dwh["tables"] if t["name"] == "customers"]
    assert [c["name"] for c in table["columns"]] == ["id", "tenure", "plan", "churned"]
    bad = catalog(chub, "POST", "connections/lake/imports", "alice", {"as": "../x", "path": "a"})
    assert bad.status_code == 400
    escape = catalog(chub, "GET", "connections/lake/browse?prefix=../", "alice")
    assert escape.status_code == 400


def test_from_a_sandbox_imports_become_datasets(chub: HubProcess) -> None:
    out = run_in_kernel(chub, "alice", "", """
%dsdata connections
%dsdata import lake:2026-11/ --as clicks
%dsdata import lake:2026-11/ --as clicks
%dsdata pull clicks -q
import pathlib, pandas
print(sorted(p.name for p in pathlib.Path("data/clicks").iterdir()))
%dsdata import dwh --query "SELECT id, tenure, plan FROM customers WHERE tenure >= :t" -p t=60 --as churn-train
%dsdata pull churn-train -q
print("rows", len(pandas.read_parquet("data/churn-train.parquet")))
%dsdata import dwh --query "DELETE FROM customers" --as nope
%dsdata import lake:2026-11/ --as churn-train
""")  # fmt: skip
    lines = out.splitlines()
    assert any("clicks@v1.0.0: a new version from lake (3 objects)" in x for x in lines), out
    assert any("clicks@v1.0.0: unchanged" in x for x in lines), out
    assert "['day1.json', 'day2.json', 'day3.json']" in lines, out
    expected = sum(1 for i in range(1, 501) if i % 72 >= 60)
    assert f"rows {expected}" in lines, out
    assert any("Imports are read-only" in x for x in lines), out
    assert any("was imported from 'dwh'" in x for x in lines), out
    no_secret_in(out)

    # an ordinary dataset: listed with lineage for alice, not even listed for erin
    r = catalog(chub, "GET", "imports/clicks", "alice")
    assert r.status_code == 200 and r.json()["versions"][0]["imported_by"] == "alice", r.text
    assert catalog(chub, "GET", "imports/clicks", "erin").status_code == 404
    listed = run_in_kernel(chub, "erin", "", "%dsdata list\n%dsdata connections\n")
    assert "clicks" not in listed and "lake" not in listed, listed
    erin = run_in_kernel(chub, "erin", "", """
%dsdata pull clicks
%dsdata import lake:2026-11/ --as mine
""")  # fmt: skip
    assert "No dataset 'clicks' in your catalog" in erin, erin
    assert "Your groups may not use the connection 'lake'" in erin, erin


def test_an_imported_dataset_is_preloaded_by_a_profile(chub: HubProcess) -> None:
    r = catalog(
        chub, "POST", "connections/lake/imports", "alice", {"as": "clicks", "path": "2026-11/"}
    )
    assert r.status_code == 200, r.text
    assert json.loads(r.text.strip().splitlines()[-1])["done"]["version"] == "v1.0.0", r.text
    assert chub.spawn("alice", "pre", {"profile": "clicks"}).status_code in (201, 202)
    try:
        chub.wait_ready("alice", "pre", timeout=120)
        workspace = chub.state / "platform" / "users" / "alice"
        assert (
            workspace / "data" / "clicks" / "day2.json"
        ).read_text() == '{"day": 2, "clicks": 20}\n'
        lineage = json.loads((workspace / ".dsdata" / "lineage.json").read_text())
        assert ("clicks", "v1.0.0") in [(p["dataset"], p["version"]) for p in lineage["pulls"]]
    finally:
        chub.stop_server("alice", "pre")


def test_an_imported_dataset_is_committed_and_reproduced(chub: HubProcess) -> None:
    """After the imports above: a commit records the imported versions as lineage, and a
    reproduction pulls exactly those versions again (through the catalog)."""
    out = run_in_kernel(chub, "alice", "", """
import json
from server_ext import dsdata
result = dsdata.commit("trained on imported data")
run = dsdata.log(1)[0]
again = dsdata.reproduce(result.run_id, "reproduced-imports")
print(json.dumps({"datasets": run["datasets"], "identical": again["identical"],
                  "reproduced": sorted((d["dataset"], d["version"], d["identical"])
                                       for d in again["datasets"])}))
""")  # fmt: skip
    found = json.loads(out.strip().splitlines()[-1])
    assert found["datasets"]["clicks"].startswith("v1.0.0@"), found
    assert found["datasets"]["churn-train"].startswith("v1.0.0@"), found
    assert found["identical"] is True
    assert ("clicks", "v1.0.0", True) in [tuple(d) for d in found["reproduced"]]
    assert ("churn-train", "v1.0.0", True) in [tuple(d) for d in found["reproduced"]]


def test_no_secret_reaches_a_sandbox_or_the_logs(chub: HubProcess) -> None:
    probe = json.loads(run_in_kernel(chub, "alice", "", """
import json, os, pathlib
environ = pathlib.Path("/proc/self/environ").read_bytes().decode(errors="replace")
files = ""
for p in pathlib.Path.home().rglob("*"):
    if p.is_file() and p.stat().st_size < 5_000_000:
        try:
            files += p.read_text(errors="replace")
        except OSError:
            pass
print(json.dumps({"env": json.dumps(dict(os.environ)) + environ, "files": files}))
""").strip().splitlines()[-1])  # fmt: skip
    no_secret_in(probe["env"])
    no_secret_in(probe["files"])
    no_secret_in(Path(chub.log_path).read_text(errors="replace"))
    for path in (chub.state / "platform").rglob("*.log"):
        no_secret_in(path.read_text(errors="replace"))


def test_the_widgets_browse_and_import(chub: HubProcess) -> None:
    out = run_in_kernel(chub, "alice", "", """
from server_ext.widgets import ConnectionsBrowser
b = ConnectionsBrowser()
print("options", list(b.connection.options))
b.connection.value = "lake"
b.prefix.value = "2026-11/"
found = b.browse()
print("keys", [o["key"] for o in found["objects"]])
b.as_name.value = "clicks-widget"
b.do_import()
print("label", b.label.value)
b.do_import()
print("again", b.label.value)
b.connection.value = "dwh"
b.query.value = "DROP TABLE customers"
b.as_name.value = "nope"
b.do_import()
print("refused", b.label.value)
""")  # fmt: skip
    assert "options ['dwh', 'lake']" in out, out
    assert "keys ['2026-11/day1.json', '2026-11/day2.json', '2026-11/day3.json']" in out
    assert "label clicks-widget@v1.0.0 (new version)" in out, out
    assert "again clicks-widget@v1.0.0 (unchanged)" in out, out
    assert "refused failed: Imports are read-only" in out, out


@pytest.mark.lab
def test_the_sidebar_browses_and_imports(chub: HubProcess) -> None:
    """The Connections section in alice's sandbox, in chromium: browse the lake, import a
    prefix through the platform, and the dataset appears in the Datasets section."""
    from .test_lab_e2e import hub_story

    summary = hub_story("hub-connections.mjs", chub, {"DATASET": "clicks-ui"})
    assert sorted(summary["connections"]) == ["dwh", "lake"]
    assert "2026-11/" in summary["browsed"] and "other.txt" in summary["browsed"]
    assert summary["proposedPath"] == "2026-11/"
    assert summary["toast"].startswith("Imported clicks-ui v1.0.0 from lake"), summary
    assert "clicks-ui" in summary["datasetRow"] and "v1.0.0" in summary["datasetRow"]
    r = catalog(chub, "GET", "imports/clicks-ui", "alice")
    assert r.status_code == 200 and len(r.json()["versions"]) == 1, r.text
