"""Reading the connections' sources: S3 objects through boto3, SQL through SQLAlchemy in a
read-only transaction, streamed to Parquet. The only code that holds a connection's secret;
it runs in the catalog service or its import process, never in a sandbox.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hub_ext.connections.settings import Connection

BROWSE_LIMIT = 1000  # entries one browse answers
BATCH_ROWS = 50_000  # rows per Parquet row group (the memory an export holds)


class SourceError(Exception):
    """A source refused or failed: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def relative_key(path: str) -> str:
    """A key or prefix below a connection's prefix: no ``..``, no leading ``/``."""
    parts = PurePosixPath(path).parts if path else ()
    if path.startswith("/") or any(p in ("..", ".") for p in parts) or "\\" in path:
        raise SourceError(400, f"{path[:200]!r} is not a path below the connection's prefix")
    return path


@dataclass(frozen=True)
class S3Object:
    key: str  # relative to the connection's prefix
    size: int
    etag: str
    version_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class S3Source:
    def __init__(self, conn: Connection, env: Mapping[str, str] = os.environ) -> None:
        import boto3

        key_id, secret = conn.secret_env
        if not env.get(key_id) or not env.get(secret):
            raise SourceError(503, f"The connection {conn.name!r} has no credentials on the "
                                   "platform (ask an admin)")  # fmt: skip
        self.conn = conn
        self.client = boto3.client(
            "s3", endpoint_url=conn.endpoint_url or None, region_name=conn.region or "us-east-1",
            aws_access_key_id=env[key_id], aws_secret_access_key=env[secret],
        )  # fmt: skip

    def _failed(self, e: Exception) -> SourceError:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return SourceError(502, f"The lake refused {self.conn.name!r}: {code}")
        return SourceError(502, f"The lake {self.conn.name!r} did not answer: {type(e).__name__}")

    def objects(self, path: str) -> list[S3Object]:
        """Every object under ``path`` (below the connection's prefix), by key."""
        base = self.conn.prefix + relative_key(path)
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.conn.bucket, Prefix=base
            ):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.conn.prefix) :]
                    if key.endswith("/"):
                        continue  # a "folder" marker
                    found.append(S3Object(key, int(item["Size"]), str(item["ETag"]).strip('"'),
                                          item.get("VersionId")))  # fmt: skip
        except Exception as e:
            raise self._failed(e) from None
        return sorted(found, key=lambda o: o.key)

    def browse(self, prefix: str) -> dict[str, Any]:
        """One level under ``prefix``: sub-prefixes and objects with sizes."""
        base = self.conn.prefix + relative_key(prefix)
        try:
            page = self.client.list_objects_v2(Bucket=self.conn.bucket, Prefix=base,
                                               Delimiter="/", MaxKeys=BROWSE_LIMIT)  # fmt: skip
        except Exception as e:
            raise self._failed(e) from None
        cut = len(self.conn.prefix)
        return {
            "prefix": prefix,
            "prefixes": [p["Prefix"][cut:] for p in page.get("CommonPrefixes", [])],
            "objects": [{"key": o["Key"][cut:], "size": int(o["Size"])}
                        for o in page.get("Contents", []) if not o["Key"].endswith("/")],
            "truncated": bool(page.get("IsTruncated")),
        }  # fmt: skip

    def download(self, obj: S3Object, dest: Path) -> None:
        try:
            self.client.download_file(self.conn.bucket, self.conn.prefix + obj.key, str(dest))
        except Exception as e:
            raise self._failed(e) from None


class SqlSource:
    def __init__(self, conn: Connection, env: Mapping[str, str] = os.environ) -> None:
        from sqlalchemy import create_engine, make_url
        from sqlalchemy.pool import NullPool

        url = env.get(conn.url_env, "")
        if not url:
            raise SourceError(503, f"The connection {conn.name!r} has no database URL on the "
                                   "platform (ask an admin)")  # fmt: skip
        self.conn = conn
        try:
            parsed = make_url(url)
            if parsed.get_backend_name() == "postgresql":
                # psycopg 3: the extended protocol runs exactly one statement per execute
                # (psycopg2's simple protocol runs `SELECT 1; COPY … TO PROGRAM …` whole)
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(parsed, poolclass=NullPool)
        except Exception as e:  # the URL itself is wrong: never show it (it holds a password)
            raise SourceError(503, f"The connection {conn.name!r} is misconfigured: "
                                   f"{type(e).__name__}") from None  # fmt: skip

    @contextlib.contextmanager
    def read_only(self) -> Iterator[Any]:
        """A connection inside a read-only transaction with the statement timeout."""
        try:
            connection = self.engine.connect()
        except Exception as e:
            raise SourceError(502, f"The warehouse {self.conn.name!r} did not answer: "
                                   f"{type(e).__name__}") from None  # fmt: skip
        try:
            with connection.begin():
                if self.engine.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    connection.exec_driver_sql(
                        f"SET LOCAL statement_timeout = {int(self.conn.timeout) * 1000}"
                    )
                elif self.engine.dialect.name == "sqlite":
                    connection.exec_driver_sql("PRAGMA query_only = ON")
                yield connection
        finally:
            connection.close()

    def browse(self) -> dict[str, Any]:
        """Tables (and views) with their columns and types."""
        from sqlalchemy import inspect

        tables = []
        with self.read_only() as connection:
            inspector = inspect(connection)
            for schema in [s for s in inspector.get_schema_names()
                           if s not in ("information_schema", "pg_catalog")]:  # fmt: skip
                names = inspector.get_table_names(schema=schema)
                names += inspector.get_view_names(schema=schema)
                for name in sorted(names)[:BROWSE_LIMIT]:
                    columns = [{"name": c["name"], "type": str(c["type"])}
                               for c in inspector.get_columns(name, schema=schema)]  # fmt: skip
                    tables.append({"schema": schema, "name": name, "columns": columns})
        return {"tables": tables}

    def export(
        self,
        query: str,
        params: Mapping[str, Any],
        dest: Path,
        progress: Callable[[int], None] = lambda rows: None,
    ) -> dict[str, Any]:
        """Stream the query's rows into a Parquet file (at most ``max_rows``); its columns
        and row count. PostgreSQL: through ``COPY`` (:mod:`.pg_copy`); others: row batches."""
        import psycopg
        import pyarrow as pa
        from sqlalchemy.exc import DBAPIError, StatementError

        from hub_ext.connections import pg_copy

        first = re.sub(r"(--[^\n]*\n|/\*.*?\*/|\s|\()+", " ", " " + query, flags=re.S).split()
        if not first or first[0].upper() not in ("SELECT", "WITH", "VALUES", "TABLE"):
            verb = first[0].upper()[:20] if first else "nothing"
            raise SourceError(400, f"Imports are read-only: they run a SELECT, not {verb}")
        try:
            with self.read_only() as connection:
                if self.engine.dialect.name == "postgresql":
                    raw = connection.connection.dbapi_connection
                    rows, described = pg_copy.export(raw, query, params, dest,
                                                     self.conn.max_rows, progress)  # fmt: skip
                    columns = [{"name": c.name, "type": str(c.arrow_type)} for c in described]
                else:
                    rows, columns = self._export_rows(connection, query, params, dest, progress)
        except SourceError:
            raise
        except pg_copy.OverLimit:
            raise self._over_limit() from None
        except pg_copy.QueryRefused as e:
            raise SourceError(400, self._reason(str(e))) from None
        except (DBAPIError, StatementError) as e:
            raise SourceError(*self._failure(str(getattr(e, "orig", e)))) from None
        except (psycopg.Error, pa.ArrowException, OSError) as e:  # COPY, CSV -> Arrow, disk
            raise SourceError(*self._failure(str(e))) from None
        return {"rows": rows, "columns": columns}

    def _over_limit(self) -> SourceError:
        return SourceError(413, f"The query returns more than {self.conn.max_rows} rows, the "
                                f"limit of {self.conn.name!r}; nothing was imported")  # fmt: skip

    def _reason(self, message: str) -> str:
        reason = message.strip().splitlines()[0][:300] if message.strip() else "refused"
        if any(w in reason for w in ("read-only", "readonly", "query_only", "data-modifying")):
            return f"The query tries to write ({reason}); imports are read-only"
        if "multiple commands" in reason:
            return f"An import runs one SELECT ({reason})"
        return reason

    def _failure(self, message: str) -> tuple[int, str]:
        reason = self._reason(message)
        if "statement timeout" in reason or "canceling statement" in reason:
            return 504, f"The query ran past {self.conn.timeout} s ({reason})"
        return 400, reason

    def _export_rows(
        self,
        connection: Any,
        query: str,
        params: Mapping[str, Any],
        dest: Path,
        progress: Callable[[int], None],
    ) -> tuple[int, list[dict[str, str]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from sqlalchemy import text

        rows = 0
        writer = None
        schema = None
        try:
            result = connection.execution_options(
                stream_results=True, max_row_buffer=BATCH_ROWS
            ).execute(text(query), dict(params))
            if not result.returns_rows:
                raise SourceError(400, "The query returns no rows (imports are SELECTs)")
            names = list(result.keys())
            for part in result.partitions(BATCH_ROWS):
                rows += len(part)
                if rows > self.conn.max_rows:
                    raise self._over_limit()
                data = {c: [r[i] for r in part] for i, c in enumerate(names)}
                table = pa.table(data) if schema is None else pa.table(data, schema=schema)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(dest, schema)
                writer.write_table(table)
                progress(rows)
            if writer is None:  # no rows: an empty table with the query's columns
                schema = pa.schema([(c, pa.string()) for c in names])
                writer = pq.ParquetWriter(dest, schema)
        finally:
            if writer is not None:
                writer.close()
        assert schema is not None
        return rows, [{"name": f.name, "type": str(f.type)} for f in schema]
