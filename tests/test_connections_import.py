"""Imports from the lake (moto's S3 server) and the warehouse (PostgreSQL) into the
platform-managed registry, run as the catalog runs them (``python -m
hub_ext.connections.imports``, the job on stdin, only that connection's secret in its
environment). What a pull gets back is compared byte for byte; GTO's view of the registry is
``gto show``'s."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from hub_ext.connections.imports import ImportJob
from hub_ext.connections.settings import load_connections
from server_ext.catalog import RegistryCatalog
from server_ext.core import DataService

from .connections import (  # noqa: F401  (fixtures)
    Lake,
    Warehouse,
    connections_config,
    lake_fixture,
    postgres_fixture,
    warehouse_fixture,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def start(job: ImportJob, env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "hub_ext.connections.imports"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**base, **env}, start_new_session=True)  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job.to_json()))
    proc.stdin.close()
    return proc


def run_import(job: ImportJob, env: dict[str, str]) -> dict[str, Any]:
    proc = start(job, env)
    assert proc.stdout is not None
    events = [json.loads(line) for line in proc.stdout]
    assert proc.wait(120) == 0
    assert all("progress" in e for e in events[:-1]), events
    return dict(events[-1])


def tags(registry: Path) -> list[str]:
    out = subprocess.run(["git", "tag", "--list"], cwd=registry, capture_output=True, text=True)
    return sorted(t for t in out.stdout.split() if "@" in t)


def gto_versions(registry: Path, name: str) -> list[str]:
    gto = os.path.join(os.path.dirname(sys.executable), "gto")
    out = subprocess.run([gto, "show", name, "--json"], cwd=registry, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return sorted(v["version"] for v in json.loads(out.stdout))


def pull(registry: Path, tmp: Path, ref: str, target: str) -> Path:
    cache = tmp / "pull-cache"
    service = DataService(tmp / "ws", cache, RegistryCatalog([str(registry)], cache))
    (tmp / "ws").mkdir(exist_ok=True)
    result = service.pull(ref, target, force=True)
    return tmp / "ws" / result.path


@pytest.fixture(autouse=True)
def _lake_as_it_was(lake: Lake) -> Iterator[None]:
    """The session's lake is shared with the hub tests: each test here leaves it as found."""
    saved = lake.snapshot()
    yield
    lake.restore(saved)


@pytest.fixture
def lake_job(lake: Lake, tmp_path: Path) -> ImportJob:
    conn = load_connections(connections_config(lake))["lake"]
    return ImportJob(conn, "clicks", "alice", str(tmp_path / "imports"), path="2026-11/")


def test_an_s3_prefix_becomes_versions_only_when_it_changes(
    lake: Lake, lake_job: ImportJob, tmp_path: Path
) -> None:
    registry = Path(lake_job.registry)
    first = run_import(lake_job, lake.env())["done"]
    assert (first["version"], first["created"]) == ("v1.0.0", True)
    lineage = first["lineage"]
    assert lineage["connection"] == "lake" and lineage["imported_by"] == "alice"
    assert lineage["source"] == {"bucket": "raw", "prefix": "events/", "path": "2026-11/"}
    keys = [o["key"] for o in lineage["objects"]]
    assert keys == ["2026-11/day1.json", "2026-11/day2.json", "2026-11/day3.json"]
    assert all(len(o["etag"]) == 32 for o in lineage["objects"])  # S3's ETags, as listed
    pulled = pull(registry, tmp_path, "clicks@v1.0.0", "data/clicks")
    assert sorted(p.name for p in pulled.iterdir()) == ["day1.json", "day2.json", "day3.json"]
    assert (pulled / "day2.json").read_bytes() == b'{"day": 2, "clicks": 20}\n'

    again = run_import(lake_job, lake.env())["done"]
    assert (again["version"], again["created"]) == ("v1.0.0", False)  # unchanged: no version
    assert tags(registry) == ["clicks@v1.0.0"]

    lake.put("events/2026-11/day2.json", b'{"day": 2, "clicks": 21}\n')
    changed = run_import(lake_job, lake.env())["done"]
    assert (changed["version"], changed["created"]) == ("v1.1.0", True)
    assert gto_versions(registry, "clicks") == ["v1.0.0", "v1.1.0"]
    assert (pull(registry, tmp_path, "clicks", "data/clicks") / "day2.json").read_bytes() == (
        b'{"day": 2, "clicks": 21}\n'
    )
    history = json.loads((registry / "imports" / "clicks.json").read_text())
    assert [h["version"] for h in history] == ["v1.0.0", "v1.1.0"]


def test_a_killed_or_failed_import_leaves_the_registry_as_it_was(
    lake: Lake, lake_job: ImportJob, tmp_path: Path
) -> None:
    registry = Path(lake_job.registry)
    assert run_import(lake_job, lake.env())["done"]["created"]
    for i in range(150):  # enough objects that the import is still downloading when killed
        lake.put(f"events/bulk/part-{i:03d}.csv", f"i\n{i}\n".encode())
    bulk = ImportJob(lake_job.connection, "bulk", "alice", str(registry), path="bulk/")
    proc = start(bulk, lake.env())
    assert proc.stdout is not None
    assert "progress" in json.loads(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    before = tags(registry)
    assert before == ["clicks@v1.0.0"]  # no bulk version
    # the next import starts from the registered state: nothing of the killed one is kept
    done = run_import(bulk, lake.env())["done"]
    assert (done["version"], done["created"]) == ("v1.0.0", True)
    assert tags(registry) == ["bulk@v1.0.0", "clicks@v1.0.0"]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=registry, capture_output=True,
                            text=True).stdout  # fmt: skip
    assert status == ""

    lake.put("events/evil/../../escape.txt", b"x")  # a key that names a parent directory
    evil = ImportJob(lake_job.connection, "evil", "alice", str(registry), path="evil/")
    answer = run_import(evil, lake.env())
    assert answer["error"]["status"] == 400 and "not a path below" in answer["error"]["message"]
    missing = run_import(ImportJob(lake_job.connection, "none", "alice", str(registry),
                                   path="nothing-here/"), lake.env())  # fmt: skip
    assert missing["error"]["status"] == 404
    no_secret = run_import(lake_job, {})  # the platform lacks the credential
    assert no_secret["error"]["status"] == 503 and "credentials" in no_secret["error"]["message"]
    assert tags(registry) == ["bulk@v1.0.0", "clicks@v1.0.0"]
    assert not (tmp_path / "escape.txt").exists() and not list(registry.parent.glob(".import-*"))


def test_a_query_becomes_a_parquet_version(
    lake: Lake, warehouse: Warehouse, tmp_path: Path
) -> None:
    conn = load_connections(connections_config(lake))["dwh"]
    registry = tmp_path / "imports"
    query = "SELECT id, tenure, plan, churned FROM customers WHERE tenure >= :t ORDER BY id"
    job = ImportJob(conn, "churn-train", "alice", str(registry), query=query,
                    params={"t": 12})  # fmt: skip
    first = run_import(job, warehouse.env())["done"]
    assert (first["version"], first["created"]) == ("v1.0.0", True)
    expected = warehouse.postgres.query("dwh", "SELECT count(*) FROM customers WHERE tenure >= 12")[
        0
    ][0]
    lineage = first["lineage"]
    assert lineage["rows"] == expected and lineage["source"] == {
        "query": query,
        "params": {"t": 12},
    }
    assert [c["name"] for c in lineage["columns"]] == ["id", "tenure", "plan", "churned"]
    frame = pd.read_parquet(pull(registry, tmp_path, "churn-train", "data/churn.parquet"))
    assert len(frame) == expected and frame["id"].is_monotonic_increasing
    assert set(frame["plan"]) == {"monthly", "yearly"}

    assert run_import(job, warehouse.env())["done"]["created"] is False  # same rows
    warehouse.execute("INSERT INTO customers VALUES (501, 40, 'monthly', false)")
    changed = run_import(job, warehouse.env())["done"]
    assert (changed["version"], changed["created"]) == ("v1.1.0", True)
    assert changed["lineage"]["rows"] == expected + 1

    writes = ImportJob(conn, "oops", "alice", str(registry),
                       query="DELETE FROM customers RETURNING id")  # fmt: skip
    answer = run_import(writes, warehouse.env())["error"]
    assert answer["status"] == 400 and "read-only" in answer["message"], answer
    hidden = ImportJob(conn, "oops", "alice", str(registry),
                       query="WITH d AS (DELETE FROM customers RETURNING id) SELECT * FROM d")  # fmt: skip
    answer = run_import(hidden, warehouse.env())["error"]
    assert answer["status"] == 400 and "read-only" in answer["message"], answer
    count = warehouse.postgres.query("dwh", "SELECT count(*) FROM customers")[0][0]
    assert count == 501  # nothing deleted

    everything = ImportJob(conn, "all-rows", "alice", str(registry),
                           query="SELECT * FROM customers CROSS JOIN generate_series(1, 3)")  # fmt: skip
    answer = run_import(everything, warehouse.env())["error"]
    assert answer["status"] == 413 and "more than 1000 rows" in answer["message"], answer
    assert tags(registry) == ["churn-train@v1.0.0", "churn-train@v1.1.0"]
    bad = run_import(ImportJob(conn, "bad", "alice", str(registry), query="SELECT * FROM no_such_table"),
                     warehouse.env())["error"]  # fmt: skip
    assert bad["status"] == 400 and '"no_such_table" does not exist' in bad["message"], bad


def test_a_query_past_its_timeout_or_of_two_statements_is_refused(
    lake: Lake, warehouse: Warehouse, tmp_path: Path
) -> None:
    conn = load_connections(connections_config(lake))["dwh"]
    registry = tmp_path / "imports"
    slow = ImportJob(dataclasses.replace(conn, timeout=1), "slow", "alice", str(registry),
                     query="SELECT pg_sleep(4) AS slept, id FROM customers")  # fmt: skip
    started = time.monotonic()
    answer = run_import(slow, warehouse.env())["error"]
    assert answer["status"] == 504 and "ran past 1 s" in answer["message"], answer
    assert time.monotonic() - started < 4  # stopped by the server, not waited out

    marker = tmp_path / "copied.txt"
    for query in (
        "SELECT 1 AS a; SELECT id FROM customers",  # a second statement
        f"SELECT 1 AS a) TO '{marker}' --",  # out of COPY's parenthesis
        "SELECT 1 AS a; COPY customers TO STDOUT",
    ):
        job = ImportJob(conn, "escape", "alice", str(registry), query=query)
        answer = run_import(job, warehouse.env())["error"]
        assert answer["status"] == 400, (query, answer)
    assert not marker.exists()
    assert not registry.exists() or tags(registry) == []


def test_a_query_keeps_its_column_types_and_nulls(
    lake: Lake, warehouse: Warehouse, tmp_path: Path
) -> None:
    conn = load_connections(connections_config(lake))["dwh"]
    registry = tmp_path / "imports"
    query = ("SELECT id, 1.5::numeric(5, 2) AS price, 2.25::float8 AS score, "
             "timestamptz '2026-11-30 23:30:00+02' AS at, date '2026-11-01' AS day, "
             "NULL::text AS missing, '' AS empty, E'a,\"b\\nc' AS quoted, plan LIKE 'mo%' AS m "
             "FROM customers WHERE id <= :n ORDER BY id")  # fmt: skip
    job = ImportJob(conn, "typed", "alice", str(registry), query=query, params={"n": 2})
    done = run_import(job, warehouse.env())["done"]
    types = {c["name"]: c["type"] for c in done["lineage"]["columns"]}
    assert types == {"id": "int32", "price": "decimal128(5, 2)", "score": "double",
                     "at": "timestamp[us, tz=UTC]", "day": "date32[day]", "missing": "string",
                     "empty": "string", "quoted": "string", "m": "bool"}  # fmt: skip
    [first, second] = pq.read_table(pull(registry, tmp_path, "typed", "t.parquet")).to_pylist()
    assert first["price"] == decimal.Decimal("1.50") and first["score"] == 2.25
    assert first["at"] == dt.datetime(2026, 11, 30, 21, 30, tzinfo=dt.UTC)
    assert first["day"] == dt.date(2026, 11, 1)
    assert (first["missing"], first["empty"], first["quoted"]) == (None, "", 'a,"b\nc')
    assert (first["id"], first["m"], second["m"]) == (1, False, True)
