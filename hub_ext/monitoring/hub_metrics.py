"""dsplatform's metrics on JupyterHub's own ``/hub/metrics`` (its registry, its
``read:metrics`` scope): GPUs in use and total per GPU type, servers per profile and state,
GPU-hours this week per group (read from the ledger and the hub database at each scrape),
spawn refusals by reason and the quota decision's latency (counted as they happen).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("dsplatform.metrics")

REFUSALS = Counter(
    "dsplatform_spawn_refusals", "Spawns refused by dsplatform's admission, by reason",
    ["reason"],
)  # fmt: skip
DECISIONS = Histogram(
    "dsplatform_quota_decision_seconds", "Time to admit or refuse a spawn (checks + reservation)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)  # fmt: skip
JOB_DECISIONS = Histogram(
    "dsplatform_job_decision_seconds",
    "Time to decide a job submission: start, queue or refuse (previews against the ledger)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class PlatformCollector(Collector):
    """Gauges of the platform overview (:func:`hub_ext.api.overview.current_usage`)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from jupyterhub.app import JupyterHub

        if not JupyterHub.initialized():
            return
        app = JupyterHub.instance()
        if getattr(app, "db", None) is None:  # not started (or failed to)
            return
        try:
            from hub_ext.api.overview import current_usage

            usage = current_usage(app.db, app.users.values(), app.config, app.spawner_class)
        except Exception as e:  # never fail the hub's whole scrape
            log.warning("dsplatform metrics: %s", e)
            return
        in_use = GaugeMetricFamily("dsplatform_gpus_in_use", "GPUs held by running and "
                                   "pending servers", labels=["gpu_type"])  # fmt: skip
        total = GaugeMetricFamily("dsplatform_gpus_total", "GPUs of the pool (bounded ones)",
                                  labels=["gpu_type"])  # fmt: skip
        for pool in usage.pools:
            in_use.add_metric([pool.gpu_type], pool.in_use)
            if pool.total is not None:
                total.add_metric([pool.gpu_type], pool.total)
        servers = GaugeMetricFamily("dsplatform_servers", "Servers per profile and state",
                                    labels=["profile", "state"])  # fmt: skip
        for slug, counts in sorted(usage.profiles.items()):
            for state, count in sorted(counts.items()):
                servers.add_metric([slug, state], count)
        hours = GaugeMetricFamily("dsplatform_group_gpu_hours_week", "GPU-hours of a group's "
                                  "members this ISO week", labels=["group"])  # fmt: skip
        for group in usage.groups:
            hours.add_metric([group.group], group.gpu_hours)
        yield from (in_use, total, servers, hours)


_registered: list[PlatformCollector] = []


def register() -> None:
    """Add the collector to the hub process's registry (once)."""
    if not _registered:
        collector = PlatformCollector()
        REGISTRY.register(collector)
        _registered.append(collector)
