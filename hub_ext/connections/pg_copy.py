"""A PostgreSQL query to Parquet at ``COPY`` speed, safely.

The query is bound on the client (psycopg's ``ClientCursor``), then *parsed alone* by the
server (``PQprepare``, the extended protocol: exactly one statement, or the server refuses),
so that it cannot close the parenthesis of ``COPY (…) TO STDOUT`` and run something else
(``TO PROGRAM``, a second statement). Only then is it run as ``COPY (SELECT * FROM (query)
LIMIT max_rows + 1) TO STDOUT (FORMAT csv)``, streamed through a pipe into pyarrow's C++ CSV
reader (the two overlap), batch by batch, with the Arrow type of each column taken from the
server's description of the prepared statement (never guessed from the text).

All of it runs inside the caller's read-only transaction with its statement timeout.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

PREPARED = b"dsplatform_import"

# PostgreSQL type OIDs -> Arrow types (anything else stays text, as PostgreSQL prints it)
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 26: pa.int64(),
    700: pa.float32(), 701: pa.float64(), 1082: pa.date32(), 1083: pa.time64("us"),
    1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}  # fmt: skip
NUMERIC = 1700


class QueryRefused(Exception):
    """The server would not parse the query (its message), or it is not one statement."""


def _message(result: Any) -> str:
    text = (result.error_message or b"").decode(errors="replace").strip()
    return text.removeprefix("ERROR:").strip() or "the server refused the query"


@dataclass(frozen=True)
class Column:
    name: str
    oid: int
    modifier: int

    @property
    def arrow_type(self) -> pa.DataType:
        if self.oid == NUMERIC:  # numeric(p, s) keeps its digits; bare numeric -> float64
            if self.modifier >= 4:
                precision, scale = (
                    ((self.modifier - 4) >> 16) & 0xFFFF,
                    (self.modifier - 4) & 0xFFFF,
                )
                if 0 < precision <= 38:
                    return pa.decimal128(precision, scale)
            return pa.float64()
        return _TYPES.get(self.oid, pa.string())


def bind(raw: Any, query: str, params: Mapping[str, Any]) -> str:
    """The query with ``:name`` parameters bound as literals (by psycopg, not by hand)."""
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql import psycopg as dialect

    compiled = text(query).compile(dialect=dialect.dialect())
    missing = sorted(set(compiled.params) - set(params))
    if missing:
        raise QueryRefused(f"The query needs a value for {', '.join(missing)} (-p NAME=VALUE)")
    values = {k: params[k] for k in compiled.params}
    return psycopg.ClientCursor(raw).mogrify(str(compiled), values)


def describe(raw: Any, sql: str) -> list[Column]:
    """The server's parse of ``sql`` as one statement: its result columns."""
    from psycopg import pq

    pgconn = raw.pgconn
    result = pgconn.prepare(PREPARED, sql.encode())
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise QueryRefused(_message(result))
    try:
        info = pgconn.describe_prepared(PREPARED)
        if info.status != pq.ExecStatus.COMMAND_OK:
            raise QueryRefused(_message(info))
        return [Column((info.fname(i) or b"").decode(), info.ftype(i), info.fmod(i))
                for i in range(info.nfields)]  # fmt: skip
    finally:
        pgconn.exec_(b"DEALLOCATE " + PREPARED)


def export(
    raw: Any,
    query: str,
    params: Mapping[str, Any],
    dest: Path,
    max_rows: int,
    progress: Callable[[int], None],
) -> tuple[int, list[Column]]:
    """Rows and columns of ``query`` written to ``dest`` (Parquet); more than ``max_rows``
    rows -> :class:`OverLimit` (after at most ``max_rows + 1`` rows were read).

    ``COPY`` runs in a thread writing into a pipe that pyarrow's CSV reader converts as it
    comes (the two overlap; nothing is staged on disk). Whichever side fails first stops
    the other: a closed pipe ends the ``COPY`` (psycopg cancels it), an ended ``COPY`` ends
    the reader; the first error is raised.
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    sql = bind(raw, query, params).strip().rstrip(";").rstrip()
    columns = describe(raw, sql)
    if not columns:
        raise QueryRefused("The query returns no rows (imports are SELECTs)")
    schema = pa.schema([(c.name, c.arrow_type) for c in columns])
    with raw.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    copy_sql = (f"COPY (SELECT * FROM (\n{sql}\n) AS dsplatform_import "
                f"LIMIT {int(max_rows) + 1}) TO STDOUT (FORMAT csv)")  # fmt: skip
    read_end, write_end = os.pipe()
    failed: list[BaseException] = []
    written = [0]

    def produce() -> None:
        try:
            with (
                os.fdopen(write_end, "wb") as out,
                raw.cursor() as cursor,
                cursor.copy(copy_sql) as copy,
            ):
                for block in copy:
                    out.write(block)
                    written[0] += len(block)
        except BrokenPipeError:
            pass  # the reader stopped first: its error is the one raised
        except BaseException as e:  # handed to the caller's thread
            failed.append(e)

    producer = threading.Thread(target=produce, name="dsplatform-copy", daemon=True)
    producer.start()
    rows = 0
    source = os.fdopen(read_end, "rb")
    try:
        with pq.ParquetWriter(dest, schema) as writer:
            try:
                reader = pcsv.open_csv(
                    source,
                    read_options=pcsv.ReadOptions(column_names=[c.name for c in columns],
                                                  block_size=8 << 20),
                    convert_options=pcsv.ConvertOptions(
                        column_types={c.name: c.arrow_type for c in columns},
                        true_values=["t"], false_values=["f"], null_values=[""],
                        strings_can_be_null=True, quoted_strings_can_be_null=False,
                    ),
                )  # fmt: skip
            except pa.ArrowInvalid:
                producer.join()
                if failed:
                    raise failed[0] from None
                if written[0] == 0:
                    return 0, columns  # no rows: the schema alone
                raise
            for batch in reader:
                rows += batch.num_rows
                if rows > max_rows:
                    raise OverLimit(max_rows)
                writer.write_batch(batch)
                progress(rows)
    except BaseException:
        source.close()
        producer.join()
        if failed and not isinstance(sys.exc_info()[1], OverLimit):
            raise failed[0] from None
        raise
    source.close()
    producer.join()
    if failed:
        raise failed[0]
    return rows, columns


class OverLimit(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit
