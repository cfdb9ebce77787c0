"""The prediction gateway's Prometheus metrics (``/services/catalog/metrics``) and the
recent-call statistics of the catalog page.

Labels are bounded: a call whose model version was not resolved (401/403 before, an unknown
model or alias) counts under ``model="", version=""``, so no caller can create series
by inventing names.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hub_ext.monitoring.drift import DriftReport

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RECENT_CALLS = 10000  # calls kept per model for the page's last-hour statistics
RECENT_MODELS = 500


@dataclass(frozen=True)
class CallStats:
    """A model's calls in the last ``seconds``: count, errors (status >= 400), latency."""

    seconds: int
    calls: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def predicted_rows(body: bytes) -> int:
    """Rows in a scoring answer (``{"predictions": [...]}`` or a list); 0 if unreadable."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return 0
    if isinstance(data, dict):
        data = data.get("predictions")
    return len(data) if isinstance(data, list) else 0


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def call_stats(
    calls: Iterable[tuple[float, int, float]], now: float, seconds: int = 3600
) -> CallStats:
    """Statistics of ``(time, status, latency_seconds)`` calls within ``seconds`` of ``now``."""
    recent = [(status, latency) for at, status, latency in calls if now - at <= seconds]
    if not recent:
        return CallStats(seconds, 0, 0, None, None, None)
    errors = sum(1 for status, _ in recent if status >= 400)
    latencies = sorted(latency * 1000 for _, latency in recent)
    return CallStats(
        seconds, len(recent), errors, errors / len(recent),
        round(_quantile(latencies, 0.50), 3), round(_quantile(latencies, 0.99), 3),
    )  # fmt: skip


class _WorkerEvents(Collector):
    """``dsplatform_serving_worker_events_total{event}``, read from the pool at scrape time."""

    def __init__(self, events: Callable[[], Mapping[str, int]]) -> None:
        self.events = events

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "dsplatform_serving_worker_events",
            "Serving worker starts and stops by reason (started, crashed, hung, ...)",
            labels=["event"],
        )
        for event, count in sorted(self.events().items()):
            family.add_metric([event], count)
        yield family


class GatewayMetrics:
    """The catalog's registry of metrics, and the calls kept for :func:`call_stats`."""

    def __init__(self, worker_events: Callable[[], Mapping[str, int]] = dict) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "dsplatform_predictions", "Prediction calls by model, version and HTTP status",
            ["model", "version", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "dsplatform_prediction_latency_seconds", "Prediction latency at the gateway",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rows = Counter(
            "dsplatform_predicted_rows", "Rows predicted (answers with status 2xx)",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.promotions = Counter(
            "dsplatform_promotion_events", "Promotion requests, decisions and rollbacks",
            ["model", "event"], registry=r,
        )  # fmt: skip
        self.drift = Gauge(
            "dsplatform_drift", "1 when a feature's input drifts from its reference, else 0",
            ["model", "version", "feature"], registry=r,
        )  # fmt: skip
        self.drift_p_value = Gauge(
            "dsplatform_drift_p_value", "The p-value of a feature's drift test",
            ["model", "version", "feature", "test"], registry=r,
        )  # fmt: skip
        self.drift_window = Gauge(
            "dsplatform_drift_window_rows", "Input rows in a version's drift window",
            ["model", "version"], registry=r,
        )  # fmt: skip
        r.register(_WorkerEvents(worker_events))
        self._recent: OrderedDict[str, deque[tuple[float, int, float]]] = OrderedDict()

    def observe(self, model: str, version: str, status: int, seconds: float, rows: int) -> None:
        """One finished prediction call (``model``/``version`` empty when unresolved)."""
        self.predictions.labels(model, version, str(status)).inc()
        self.latency.labels(model, version).observe(seconds)
        if rows:
            self.rows.labels(model, version).inc(rows)
        if model:
            calls = self._recent.get(model)
            if calls is None:
                calls = self._recent[model] = deque(maxlen=RECENT_CALLS)
            self._recent.move_to_end(model)
            calls.append((time.time(), status, seconds))
            while len(self._recent) > RECENT_MODELS:
                self._recent.popitem(last=False)

    def promotion(self, model: str, event: str) -> None:
        self.promotions.labels(model, event).inc()

    def recent(self, model: str, seconds: int = 3600) -> CallStats:
        return call_stats(self._recent.get(model, ()), time.time(), seconds)

    def set_drift(self, report: DriftReport) -> None:
        """Gauges of a drift report (features without a verdict are left out)."""
        self.drift_window.labels(report.model, report.version).set(report.window)
        for feature in report.features:
            if feature.test == "none" or feature.p_value is None:
                continue
            self.drift.labels(report.model, report.version, feature.feature).set(
                1 if feature.drift else 0
            )
            self.drift_p_value.labels(
                report.model, report.version, feature.feature, feature.test
            ).set(feature.p_value)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
