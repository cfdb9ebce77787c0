"""The pure parts of monitoring: input windows, drift tests, call statistics, the choice of
a reference file, and the settings' checks."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from traitlets.config import Config

from hub_ext.errors import ConfigError
from hub_ext.monitoring.drift import compare, feature_drift
from hub_ext.monitoring.gateway_metrics import GatewayMetrics, call_stats, predicted_rows
from hub_ext.monitoring.reference import lineage_datasets, pick_file
from hub_ext.monitoring.settings import check
from hub_ext.monitoring.window import InputWindows, parse_rows

ROWS = [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}, "application/json"),
        ({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, "application/json"),
        ({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, "application/json"),
        ({"instances": [{"a": 1, "b": "x"}, {"a": 2.0, "b": "y"}]}, "application/json; charset=utf-8"),
        ("a,b\n1,x\n2,y\n", "text/csv"),
    ],
)  # fmt: skip
def test_rows_of_every_scoring_format(body: object, content_type: str) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert parse_rows(raw, content_type) == ROWS


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"inputs": [[1, 2], [3, 4]]}', b'{"other": 1}', b"[" * 100000],
)
def test_what_is_not_named_rows_is_not_sampled(raw: bytes) -> None:
    assert parse_rows(raw, "application/json") == []


def test_windows_are_bounded() -> None:
    windows = InputWindows(sample_size=5, max_versions=2, max_features=1)
    body = json.dumps({"dataframe_records": [{"a": i, "b": i} for i in range(8)]}).encode()
    assert windows.offer(("m", "1"), body, "application/json") == 5
    assert windows.rows(("m", "1")) == [{"a": float(i)} for i in range(3, 8)]  # newest 5, 1 col
    windows.offer(("m", "2"), body, "application/json")
    windows.offer(("m", "3"), body, "application/json")
    assert windows.keys() == [("m", "2"), ("m", "3")]  # the least recently fed went
    sampled = InputWindows(sample_size=1000, sample_rate=0.25, rng=random.Random(1))
    one = json.dumps({"dataframe_records": [{"a": 1}]}).encode()
    taken = sum(sampled.offer(("m", "1"), one, "application/json") for _ in range(400))
    assert 70 <= taken <= 130  # about a quarter of the requests
    assert InputWindows(10, sample_rate=0).offer(("m", "1"), one, "application/json") == 0


def test_numbers_use_ks_and_categories_chi_squared() -> None:
    rng = np.random.default_rng(0)
    ref = list(rng.normal(size=500))
    same = feature_drift("x", ref, list(rng.normal(size=300)), 0.01, 30)
    moved = feature_drift("x", ref, list(rng.normal(loc=1.0, size=300)), 0.01, 30)
    assert (same.test, same.drift, moved.test, moved.drift) == ("ks", False, "ks", True)
    assert moved.p_value is not None and moved.p_value < 1e-10 and moved.statistic
    cats = ["a"] * 300 + ["b"] * 200
    assert not feature_drift("c", cats, ["a"] * 60 + ["b"] * 40, 0.01, 30).drift
    changed = feature_drift("c", cats, ["b"] * 90 + ["c"] * 10, 0.01, 30)
    assert changed.test == "chi2" and changed.drift
    few = feature_drift("x", ref, [1.0] * 5, 0.01, 30)
    assert few.test == "none" and not few.drift and "30 needed" in few.note


def test_the_report_needs_a_window() -> None:
    report = compare("m", "1", {"a": [1.0, 2.0]}, [{"a": 1.0}], ["a"], 0.01, 30)
    assert report.drift is None and "drift needs 30" in report.note
    rows = [{"a": float(i % 7)} for i in range(40)]
    report = compare("m", "1", {"a": [float(i % 7) for i in range(70)]}, rows, ["a", "z"], 0.01, 30)
    assert report.drift is False and [f.test for f in report.features] == ["ks", "none"]
    assert report.to_json()["features"][1]["note"] == "not a column of the reference"


def test_call_statistics() -> None:
    calls = [(100.0, 200, 0.010), (100.0, 200, 0.020), (100.0, 500, 0.100), (10.0, 200, 9.0)]
    stats = call_stats(calls, now=200.0, seconds=120)
    assert (stats.calls, stats.errors, stats.p50_ms, stats.p99_ms) == (3, 1, 20.0, 100.0)
    assert stats.error_rate == pytest.approx(1 / 3)
    assert call_stats([], 0.0).calls == 0 and call_stats([], 0.0).p50_ms is None
    assert predicted_rows(b'{"predictions": [1, 2, 3]}') == 3 and predicted_rows(b"[1]") == 1
    assert predicted_rows(b"oops") == 0


def test_metrics_text_and_worker_events() -> None:
    metrics = GatewayMetrics(lambda: {"started": 2, "crashed": 1})
    metrics.observe("m", "1", 200, 0.01, 4)
    metrics.promotion("m", "approved")
    text = metrics.text().decode()
    assert 'dsplatform_predictions_total{model="m",status="200",version="1"} 1.0' in text
    assert 'dsplatform_serving_worker_events_total{event="crashed"} 1.0' in text
    assert 'dsplatform_promotion_events_total{event="approved",model="m"} 1.0' in text
    assert metrics.recent("m").calls == 1 and metrics.recent("other").calls == 0


def test_the_reference_file_from_lineage() -> None:
    tags = {"dsdata.dataset.iris": "v2.0.0@abc", "dsdata.git_sha": "f" * 40, "mlflow.x": "y"}
    assert lineage_datasets(tags) == [("iris", "v2.0.0")]
    files = [("iris.csv", ["a", "b", "y"]), ("test.csv", ["a", "b", "y"]),
             ("train.csv", ["a", "b", "y"]), ("other.csv", ["a"])]  # fmt: skip
    assert pick_file(files, ["a", "b"]) == "train.csv"
    assert pick_file(files[:2], ["a", "b"]) == "iris.csv"
    assert pick_file(files, ["zzz"]) is None and pick_file(files, []) is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sample_rate", -0.1, "is not between 0 and 1"),
        ("sample_size", 0, "must be at least 1"),
        ("drift_p_value", 1.0, "is not between 0 and 1"),
        ("drift_interval", -1, "is negative"),
    ],
)
def test_invalid_settings_name_the_key(key: str, value: float, message: str) -> None:
    c = Config()
    setattr(c.PlatformMonitoring, key, value)
    with pytest.raises(ConfigError, match=f"c.PlatformMonitoring.{key}: .*{message}"):
        check(c)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "ftp", "groups": ["g"]}, "key 'type': 'ftp' is not 's3' or 'sql'"),
        ({"type": "s3", "bucket": "Raw!", "groups": ["g"], "credentials": {"env": "L"}},
         "key 'bucket'"),
        ({"type": "s3", "bucket": "raw", "groups": [], "credentials": {"env": "L"}}, "key 'groups'"),
        ({"type": "s3", "bucket": "raw", "groups": ["g"], "credentials": {"key": "AKIA"}},
         "key 'credentials'"),
        ({"type": "s3", "bucket": "raw", "groups": ["g"], "credentials": {"env": "L"},
          "prefix": "../up"}, "key 'prefix'"),
        ({"type": "sql", "url_env": "postgresql://u:p@h/db", "groups": ["g"]}, "key 'url_env'"),
        ({"type": "sql", "url_env": "DWH", "groups": ["g"], "max_rows": 0}, "key 'max_rows'"),
    ],
)  # fmt: skip
def test_invalid_connections_name_the_key(spec: dict, message: str) -> None:
    from hub_ext.connections.settings import load_connections

    with pytest.raises(
        ConfigError, match=r"c\.DataConnections\.connections\['c'\]: " + re.escape(message)
    ):
        load_connections({"c": spec})
    with pytest.raises(ConfigError, match="is not a connection name"):
        load_connections({"Bad Name": {"type": "sql"}})
