"""A model version's reference data, found from lineage alone.

The version's tags name the dataset versions its training run pulled
(``dsdata.dataset.NAME = VERSION@REV``, set by ``%dsdata publish``). Of those, the file whose
columns include every input of the model's signature is the reference (a directory's file
named like ``train`` first, else its first matching file). The pure choices are here; the
catalog's :class:`~hub_ext.services.catalog.monitoring.DriftMonitor` fetches the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def lineage_datasets(tags: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(dataset, version)`` of each ``dsdata.dataset.*`` tag, by name."""
    found = []
    for key, value in sorted(tags.items()):
        if key.startswith("dsdata.dataset.") and value:
            found.append((key[len("dsdata.dataset.") :], value.split("@", 1)[0]))
    return found


def is_table(name: str) -> bool:
    return name.lower().endswith(TABLE_SUFFIXES)


def pick_file(files: Iterable[tuple[str, Sequence[str]]], features: Sequence[str]) -> str | None:
    """Of ``(name, columns)``, the training file for ``features``: every feature among its
    columns; one named like ``train`` first, then by name."""
    wanted = set(features)
    matching = sorted(name for name, columns in files if wanted and wanted <= set(columns))
    if not matching:
        return None
    trained = [n for n in matching if "train" in n.rpartition("/")[2].lower()]
    return (trained or matching)[0]


def table_columns(path: Path, name: str) -> list[str]:
    """The column names of a CSV/TSV/Parquet file (its header only)."""
    import pandas as pd

    if name.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(path).names]
    sep = "\t" if name.lower().endswith(".tsv") else ","
    return [str(c) for c in pd.read_csv(path, nrows=0, sep=sep).columns]


def read_columns(
    path: Path, name: str, features: Sequence[str], max_rows: int
) -> dict[str, list[Any]]:
    """``features`` of a table as plain values, a uniform sample of at most ``max_rows``."""
    import pandas as pd

    if name.lower().endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path, columns=list(features))
    else:
        sep = "\t" if name.lower().endswith(".tsv") else ","
        frame = pd.read_csv(path, usecols=list(features), sep=sep)
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=0)
    return {str(c): _plain(frame[c].tolist()) for c in frame.columns}


def _plain(values: list[Any]) -> list[Any]:
    """Numbers as floats, others as strings (as the input window keeps them)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, int | float):  # bools too
            out.append(float(v))
        elif v is None:
            out.append(None)
        else:
            out.append(str(v))
    return out
