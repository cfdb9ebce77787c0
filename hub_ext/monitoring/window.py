"""A bounded window of recent prediction inputs per model version (for drift).

The gateway offers every request body; a fraction (``sample_rate``) is parsed here as data
(JSON or CSV, never unpickled or executed) and its rows enter the version's window, a ring
of at most ``sample_size`` rows of at most ``max_features`` scalar columns. At most
``max_versions`` windows are kept, the least recently fed dropped first, so memory is
bounded whatever the traffic.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

Row = dict[str, float | str]
MAX_TEXT = 200  # characters kept of a string value


def _scalar(value: Any) -> float | str | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return None  # nested values, null: not a feature value the window keeps


def _rows_from_records(records: Iterable[Any], max_features: int) -> list[Row]:
    rows = []
    for record in records:
        if not isinstance(record, dict):
            return []  # a tensor-style payload: no named features to compare
        row: Row = {}
        for key, value in list(record.items())[:max_features]:
            kept = _scalar(value)
            if kept is not None:
                row[str(key)] = kept
        rows.append(row)
    return rows


def _rows_from_split(split: Any, max_features: int) -> list[Row]:
    if not isinstance(split, dict):
        return []
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not isinstance(data, list):
        return []
    names = [str(c) for c in columns[:max_features]]
    records = (dict(zip(names, row, strict=False)) for row in data if isinstance(row, list))
    return _rows_from_records(records, max_features)


def parse_rows(body: bytes, content_type: str, max_features: int = 100) -> list[Row]:
    """The named rows of a request in MLflow's scoring formats (``dataframe_split``,
    ``dataframe_records``, ``inputs``/``instances`` as records or columns, CSV); empty for
    anything else (tensors, parquet, invalid input: the model's worker judges those)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/csv":
        try:
            reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
            records = [{k: _number(v) for k, v in r.items() if k is not None} for r in reader]
        except (UnicodeDecodeError, csv.Error):
            return []
        return _rows_from_records(records, max_features)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    if "dataframe_split" in data:
        return _rows_from_split(data["dataframe_split"], max_features)
    for key in ("dataframe_records", "inputs", "instances"):
        value = data.get(key)
        if isinstance(value, list):
            return _rows_from_records(value, max_features)
        if isinstance(value, dict):  # columns: {"x1": [..], "x2": [..]}
            columns = {k: v for k, v in value.items() if isinstance(v, list)}
            length = min((len(v) for v in columns.values()), default=0)
            by_row = ({k: v[i] for k, v in columns.items()} for i in range(length))
            return _rows_from_records(by_row, max_features)
    return []


def _number(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


class InputWindows:
    """Recent input rows per ``(model, version)`` (see the module's docstring)."""

    def __init__(
        self,
        sample_size: int,
        sample_rate: float = 1.0,
        max_versions: int = 50,
        max_features: int = 100,
        rng: random.Random | None = None,
    ) -> None:
        self.sample_size = sample_size
        self.sample_rate = sample_rate
        self.max_versions = max_versions
        self.max_features = max_features
        self._rng = rng or random.Random()
        self._windows: OrderedDict[tuple[str, str], deque[Row]] = OrderedDict()

    def offer(self, key: tuple[str, str], body: bytes, content_type: str) -> int:
        """Sample the request's rows into ``key``'s window; how many rows entered."""
        if self.sample_rate <= 0 or self._rng.random() >= self.sample_rate:
            return 0
        rows = parse_rows(body, content_type, self.max_features)
        if not rows:
            return 0
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque(maxlen=self.sample_size)
        self._windows.move_to_end(key)
        window.extend(rows[-self.sample_size :])
        while len(self._windows) > self.max_versions:
            self._windows.popitem(last=False)
        return min(len(rows), self.sample_size)

    def rows(self, key: tuple[str, str]) -> list[Row]:
        """A copy of ``key``'s window, oldest first (safe to hand to a thread)."""
        return list(self._windows.get(key, ()))

    def keys(self) -> list[tuple[str, str]]:
        return list(self._windows)
