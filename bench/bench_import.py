"""Imports from the lake and the warehouse vs copying the same data by hand.

* S3: ``--gb`` of objects (``--object-mb`` each) under a prefix of moto's S3 server on
  loopback. Platform: ``python -m hub_ext.connections.imports`` (what the catalog runs:
  download, ``dvc add``, push to the registry's remote, commit, GTO tag). Anchor: ``boto3``
  downloading the same objects to a directory (the ``aws s3 sync`` equivalent), with as many
  threads as the import uses. Then a second import of the unchanged prefix (no new version).
* SQL: a ``--rows``-row table in a real PostgreSQL. Platform: the import of ``SELECT *``
  (read-only transaction, streamed to Parquet in row groups, DVC, GTO). Anchor: ``COPY (SELECT
  *) TO STDOUT`` into a CSV file through psycopg2 (the fastest way out of PostgreSQL).

Rounds alternate (ABBA). The goal is a ratio platform/anchor (time) of at most 1.5: what
versioning, hashing and pushing cost on top of moving the bytes.

    .venv/bin/python -m bench.bench_import [--gb 1] [--rows 5000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hub_ext.connections.imports import DOWNLOAD_THREADS, ImportJob
from hub_ext.connections.settings import load_connections
from tests.connections import (
    BUCKET,
    DWH_PASSWORD,
    LAKE_KEY,
    LAKE_SECRET,
    Lake,
    s3_server,
)
from tests.postgres import PostgresServer, find_bindir

from .common import cpu_contention, log, machine_info, table, write_result

GOAL = 1.5


def run_import(job: ImportJob, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hub_ext.connections.imports"],
                          input=json.dumps(job.to_json()), capture_output=True, text=True,
                          env={**base, **env}, check=True)  # fmt: skip
    seconds = time.perf_counter() - started
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    if "done" not in last:
        raise RuntimeError(f"import failed: {last}")
    return seconds, last["done"]


def s3_bench(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    with s3_server() as lake:
        return _s3_rounds(args, base, lake)


def _s3_rounds(args: argparse.Namespace, base: Path, lake: Lake) -> dict[str, Any]:
    client, url = lake.client, lake.url
    count = max(1, int(args.gb * 1024 / args.object_mb))
    block = os.urandom(args.object_mb << 20)
    for i in range(count):
        client.put_object(Bucket=BUCKET, Key=f"events/bulk/part-{i:04d}.bin",
                          Body=block[i % 251 :] + block[: i % 251])  # fmt: skip
    total = count * (args.object_mb << 20)
    log(f"lake: {count} objects, {total / 2**30:.2f} GiB")
    spec = {"lake": {"type": "s3", "endpoint_url": url, "bucket": BUCKET, "prefix": "events/",
                     "credentials": {"env": "LAKE"}, "groups": ["*"]}}  # fmt: skip
    conn = load_connections(spec)["lake"]
    env = {"LAKE_ACCESS_KEY_ID": LAKE_KEY, "LAKE_SECRET_ACCESS_KEY": LAKE_SECRET}

    def anchor(target: Path) -> float:
        started = time.perf_counter()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="events/bulk/") for o in page.get("Contents", [])]  # fmt: skip
        target.mkdir(parents=True)
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            list(pool.map(lambda k: client.download_file(BUCKET, k, str(target / Path(k).name)),
                          keys))  # fmt: skip
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"import": [], "boto3": []}
    unchanged = []
    for i in range(args.rounds):
        order = ["import", "boto3"] if i % 2 == 0 else ["boto3", "import"]
        for name in order:
            if name == "boto3":
                target = base / f"anchor-{i}"
                times[name].append(anchor(target))
                shutil.rmtree(target)
            else:
                registry = base / f"registry-{i}"
                job = ImportJob(conn, "bulk", "bench", str(registry / "imports"), path="bulk/")
                seconds, done = run_import(job, env)
                assert done["created"], done
                times[name].append(seconds)
                again, done = run_import(job, env)  # unchanged: ETags only, no download
                assert not done["created"], done
                unchanged.append(again)
                shutil.rmtree(registry)
            log(f"round {i} {name}: {times[name][-1]:.2f} s")
    return {"bytes": total, "objects": count, "seconds": times, "unchanged_seconds": unchanged}


def sql_bench(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is needed (scripts/system-deps installs it)")
    postgres = PostgresServer(bindir).start()
    try:
        postgres.create_database("dwh", "analyst", DWH_PASSWORD)
        conn = postgres.connect("dwh", "analyst", DWH_PASSWORD)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE events (id bigint, user_id integer, amount double precision,"
                        " kind text, at timestamp)")  # fmt: skip
            cur.execute(f"INSERT INTO events SELECT i, i % 100000, (i % 1000) / 10.0, "
                        f"(ARRAY['view','click','buy'])[1 + i % 3], timestamp '2026-11-01' + "
                        f"(i % 86400) * interval '1 second' FROM generate_series(1, {args.rows}) i")  # fmt: skip
        log(f"warehouse: {args.rows} rows")
        url = f"postgresql+psycopg2://analyst:{DWH_PASSWORD}@{postgres.host}:{postgres.port}/dwh"
        spec = {"dwh": {"type": "sql", "url_env": "DWH_URL", "groups": ["*"],
                        "max_rows": args.rows, "timeout": 3600}}  # fmt: skip
        connection = load_connections(spec)["dwh"]

        def anchor(target: Path) -> float:
            started = time.perf_counter()
            with open(target, "w") as f, conn.cursor() as cur:
                cur.copy_expert("COPY (SELECT * FROM events) TO STDOUT WITH CSV HEADER", f)
            return time.perf_counter() - started

        times: dict[str, list[float]] = {"import": [], "copy": []}
        for i in range(args.rounds):
            order = ["import", "copy"] if i % 2 == 0 else ["copy", "import"]
            for name in order:
                if name == "copy":
                    target = base / f"copy-{i}.csv"
                    times[name].append(anchor(target))
                    target.unlink()
                else:
                    registry = base / f"sql-registry-{i}"
                    job = ImportJob(connection, "events", "bench", str(registry / "imports"),
                                    query="SELECT * FROM events")  # fmt: skip
                    seconds, done = run_import(job, {"DWH_URL": url})
                    assert done["lineage"]["rows"] == args.rows, done
                    times[name].append(seconds)
                    shutil.rmtree(registry)
                log(f"round {i} {name}: {times[name][-1]:.2f} s")
        conn.close()
        return {"rows": args.rows, "seconds": times}
    finally:
        postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--object-mb", type=int, default=16)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    contention = cpu_contention()
    base = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        s3 = s3_bench(args, base)
        sql = sql_bench(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    s3_ratio = mean(s3["seconds"]["import"]) / mean(s3["seconds"]["boto3"])
    sql_ratio = mean(sql["seconds"]["import"]) / mean(sql["seconds"]["copy"])
    mib = s3["bytes"] / 2**20
    rows = [
        (f"S3 {mib:.0f} MiB, {s3['objects']} objects: boto3 download ({DOWNLOAD_THREADS} threads)",
         mean(s3["seconds"]["boto3"]), mib / mean(s3["seconds"]["boto3"]), "1.00"),
        ("  import (download, dvc add + push, git, GTO)", mean(s3["seconds"]["import"]),
         mib / mean(s3["seconds"]["import"]), f"{s3_ratio:.2f}"),
        ("  re-import, unchanged (ETags only)", mean(s3["unchanged_seconds"]), "", ""),
        (f"SQL {sql['rows']} rows: COPY ... TO STDOUT (CSV)", mean(sql["seconds"]["copy"]),
         sql["rows"] / mean(sql["seconds"]["copy"]), "1.00"),
        ("  import (read-only SELECT -> Parquet, dvc, GTO)", mean(sql["seconds"]["import"]),
         sql["rows"] / mean(sql["seconds"]["import"]), f"{sql_ratio:.2f}"),
    ]  # fmt: skip
    print(table(["what", "seconds", "MiB/s or rows/s", "ratio"], rows))
    for label, ratio in (("S3", s3_ratio), ("SQL", sql_ratio)):
        print(f"{label}: import/anchor {ratio:.2f} (goal <= {GOAL}): "
              f"{'meets goal' if ratio <= GOAL else 'misses goal'}")  # fmt: skip
    write_result("bench_import", {"params": vars(args), "s3": s3, "sql": sql,
                                  "ratios": {"s3": s3_ratio, "sql": sql_ratio}, "goal": GOAL,
                                  "machine": machine_info(), "contention_before": contention})  # fmt: skip


if __name__ == "__main__":
    main()
