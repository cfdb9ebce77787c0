"""One import, in its own process: ``python -m hub_ext.connections.imports`` with the job as
JSON on stdin and the connection's secret (only that one) in its environment. It stages the
data outside the registry, publishes it (:mod:`.registry`) and writes progress as JSON lines
on stdout, ending with ``{"done": {...}}`` or ``{"error": {"message", "status"}}``.

Killing it at any point leaves the registry as it was; so does any failure (over
``max_rows``, a query that writes, an unreachable source).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub_ext.connections.registry import ImportRegistry
from hub_ext.connections.settings import Connection
from hub_ext.connections.sources import S3Source, SourceError, SqlSource, relative_key

DOWNLOAD_THREADS = 8  # objects downloaded at once (boto3's client is thread-safe)


@dataclass(frozen=True)
class ImportJob:
    """What the catalog asks for: the connection, the source (``path`` for S3, ``query``
    and ``params`` for SQL), the dataset it becomes, who asked."""

    connection: Connection
    dataset: str
    user: str
    registry: str
    path: str = ""
    query: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["connection"]["groups"] = list(self.connection.groups)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportJob:
        conn = dict(data["connection"])
        conn["groups"] = tuple(conn["groups"])
        return cls(**{**data, "connection": Connection(**conn)})


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run(job: ImportJob, say: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The import: ``{"dataset", "version", "created", "lineage"}``."""
    conn = job.connection
    registry = ImportRegistry(Path(job.registry))
    record: dict[str, Any] = {
        "dataset": job.dataset, "connection": conn.name, "type": conn.type,
        "imported_by": job.user, "imported_at": now_iso(),
    }  # fmt: skip
    with registry.locked():
        if conn.type == "s3":
            return _s3(job, registry, record, say)
        return _sql(job, registry, record, say)


def _s3(job: ImportJob, registry: ImportRegistry, record: dict[str, Any],
        say: Callable[[dict[str, Any]], None]) -> dict[str, Any]:  # fmt: skip
    conn = job.connection
    source = S3Source(conn)
    path = relative_key(job.path)
    objects = source.objects(path)
    if not objects:
        raise SourceError(404, f"No objects under {path!r} in {conn.name!r}")
    listed = [o.to_json() for o in objects]
    record["source"] = {"bucket": conn.bucket, "prefix": conn.prefix, "path": path}
    record["objects"] = listed
    history = registry.history(job.dataset)
    last = history[-1] if history else None
    if last and last.get("source") == record["source"] and last.get("objects") == listed:
        say({"progress": {"unchanged": True}})
        return {"dataset": job.dataset, "version": last["version"], "created": False,
                "lineage": last}  # fmt: skip
    total = sum(o.size for o in objects)
    with tempfile.TemporaryDirectory(dir=registry.root.parent, prefix=".import-") as tmp:
        staged = Path(tmp) / job.dataset
        base = path.rpartition("/")[0] + "/" if "/" in path else ""  # the folder of `path`
        targets = []
        for obj in objects:
            rel = relative_key(obj.key[len(base) :])  # '..' never leaves the staging folder
            targets.append((obj, staged / rel))
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        done = 0

        def fetch(target: tuple[Any, Path]) -> Any:
            source.download(*target)
            return target[0]

        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            for obj in pool.map(fetch, targets):
                done += obj.size
                say({"progress": {"bytes": done, "total": total, "objects": len(objects)}})
        version, created = registry.publish(
            job.dataset, staged, f"data/{job.dataset}", record,
            conn.description or f"Imported from {conn.name}", ["import", conn.name],
        )  # fmt: skip
    return {"dataset": job.dataset, "version": version, "created": created,
            "lineage": registry.history(job.dataset)[-1]}  # fmt: skip


def _sql(job: ImportJob, registry: ImportRegistry, record: dict[str, Any],
         say: Callable[[dict[str, Any]], None]) -> dict[str, Any]:  # fmt: skip
    conn = job.connection
    if not job.query.strip():
        raise SourceError(400, "An import from a SQL connection needs --query")
    source = SqlSource(conn)
    with tempfile.TemporaryDirectory(dir=registry.root.parent, prefix=".import-") as tmp:
        staged = Path(tmp) / f"{job.dataset}.parquet"
        result = source.export(job.query, job.params, staged,
                               lambda rows: say({"progress": {"rows": rows}}))  # fmt: skip
        record["source"] = {"query": job.query, "params": job.params}
        record.update(rows=result["rows"], columns=result["columns"])
        version, created = registry.publish(
            job.dataset, staged, f"data/{job.dataset}.parquet", record,
            conn.description or f"Imported from {conn.name}", ["import", conn.name],
        )  # fmt: skip
    lineage = registry.history(job.dataset)[-1]
    return {"dataset": job.dataset, "version": version, "created": created, "lineage": lineage}


def main() -> None:
    # the events own stdout; what DVC, git and GTO print goes to stderr
    events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def say(event: dict[str, Any]) -> None:
        events.write(json.dumps(event, default=str) + "\n")
        events.flush()

    os.umask(0o077)  # the registry is the platform's; sandboxes read it only through the catalog
    try:
        job = ImportJob.from_json(json.loads(sys.stdin.read()))
        say({"done": run(job, say)})
    except SourceError as e:
        say({"error": {"message": e.message, "status": e.status}})
    except Exception as e:  # reported, never a hang; the registry is left as it was
        say({"error": {"message": f"The import failed: {type(e).__name__}: {str(e)[:300]}",
                       "status": 500}})  # fmt: skip


if __name__ == "__main__":
    main()
