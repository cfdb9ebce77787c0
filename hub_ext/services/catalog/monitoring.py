"""The gateway's monitoring routes and its drift monitor.

* ``GET metrics``: every gateway metric in Prometheus text format, for a hub token holding
  JupyterHub's ``read:metrics`` scope (and access to the catalog service);
* ``GET api/models/{name}/{alias|version}/drift``: the version's recent inputs (the window
  :class:`~hub_ext.monitoring.window.InputWindows` keeps) against its reference data, found
  from lineage alone (:mod:`hub_ext.monitoring.reference`), else the model's logged input
  example (a weak reference, said so).

Reference data are read as data (CSV/Parquet through pandas), never as code; they are
fetched into the shared cache like any pull, and kept in memory for at most
``max_versions`` versions of at most ``reference_rows`` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from tornado import ioloop, web

from hub_ext.monitoring.drift import DriftReport, Reference, compare
from hub_ext.monitoring.gateway_metrics import GatewayMetrics
from hub_ext.monitoring.reference import (
    is_table,
    lineage_datasets,
    pick_file,
    read_columns,
    table_columns,
)
from hub_ext.monitoring.settings import PlatformMonitoring
from hub_ext.monitoring.window import InputWindows
from hub_ext.services.catalog.handlers import CatalogHandler, ModelRefHandler
from hub_ext.services.catalog.openapi import signature_columns
from server_ext.records import DatasetEntry

if TYPE_CHECKING:
    from hub_ext.services.catalog.app import CatalogService

METRICS_SCOPE = "read:metrics"
log = logging.getLogger("dsplatform.catalog.monitoring")
ReferenceData = tuple[Reference, dict[str, list[Any]]]


class DriftMonitor:
    """Input windows, references and drift reports of the served model versions."""

    def __init__(self, app: CatalogService, settings: PlatformMonitoring) -> None:
        self.app = app
        self.settings = settings
        self.windows = InputWindows(
            settings.sample_size, settings.sample_rate, settings.max_versions,
            settings.max_features,
        )  # fmt: skip
        self.metrics = GatewayMetrics(getattr(app.serving, "events", dict))
        self._references: OrderedDict[tuple[str, str], ReferenceData] = OrderedDict()
        self._timer: ioloop.PeriodicCallback | None = None
        self._lock = threading.Lock()  # references are found in worker threads
        self._finding: dict[tuple[str, str], threading.Lock] = {}  # per version being found
        self._last: OrderedDict[tuple[str, str], DriftReport] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.enabled)

    def features(self, name: str, version: str) -> list[str]:
        """The named inputs of the version's signature (empty without one)."""
        signature = signature_columns(self.app.gateway.info(name, version).signature) or {}
        return [c["name"] for c in signature.get("inputs") or [] if c.get("name")]

    def reference(
        self, name: str, version: str, features: list[str], entries: list[DatasetEntry]
    ) -> ReferenceData | None:
        """The version's reference (cached): lineage first, else its input example."""
        key = (name, version)
        with self._lock:
            if key in self._references:
                self._references.move_to_end(key)
                return self._references[key]
            finding = self._finding.setdefault(key, threading.Lock())
        # one version's reference is fetched once; other versions do not wait for it
        with finding:
            with self._lock:
                if key in self._references:
                    return self._references[key]
            found = self._from_lineage(name, version, features, entries)
            if found is None:
                found = self._from_example(name, version, features)
            with self._lock:
                self._finding.pop(key, None)
                if found is not None:
                    self._references[key] = found
                    while len(self._references) > self.settings.max_versions:
                        self._references.popitem(last=False)
            return found

    def _from_lineage(
        self, name: str, version: str, features: list[str], entries: list[DatasetEntry]
    ) -> ReferenceData | None:
        tags = dict(self.app.gateway.client().get_model_version(name, version).tags or {})
        by_name = {e.name: e for e in entries}
        fetcher = self.app.fetcher
        for dataset, dataset_version in lineage_datasets(tags):
            entry = by_name.get(dataset)
            if entry is None or not features:
                continue
            try:
                fetcher.fetch(entry, dataset_version, lambda *_: None)
                described = fetcher.describe(entry, dataset_version)
            except Exception as e:  # that version is gone, or its remote unreachable
                log.warning("drift reference %s@%s: %s", dataset, dataset_version, e)
                continue
            files = {}
            for item in fetcher.cache.entries(described):
                shown = item["relpath"] or described.file_name
                if is_table(shown):
                    path = fetcher.cache.object_path(item["md5"])
                    with contextlib.suppress(Exception):  # not a table after all
                        files[shown] = (path, table_columns(path, shown))
            chosen = pick_file([(n, cols) for n, (_, cols) in files.items()], features)
            if chosen is None:
                continue
            columns = read_columns(files[chosen][0], chosen, features, self.settings.reference_rows)
            return Reference("lineage", dataset, dataset_version, chosen), columns
        return None

    def _from_example(self, name: str, version: str, features: list[str]) -> ReferenceData | None:
        example = self.app.gateway.example_columns(name, version)
        if not example:
            return None
        reference = Reference(
            "input_example", weak=True,
            note="No dataset version in this model's lineage has its input columns: the "
            "model's logged input example is the reference, a weak one (a few rows).",
        )  # fmt: skip
        return reference, {c: v for c, v in example.items() if not features or c in features}

    async def report(self, name: str, version: str) -> DriftReport:
        """The version's drift report now; its gauges in ``/metrics`` follow it."""
        rows = self.windows.rows((name, version))
        entries = await self.app.dataset_entries()
        in_thread = asyncio.get_running_loop().run_in_executor
        report = await in_thread(None, self._report, name, version, rows, entries)
        if self.enabled:
            self.metrics.set_drift(report)
        self._last[(name, version)] = report
        self._last.move_to_end((name, version))
        while len(self._last) > self.settings.max_versions:
            self._last.popitem(last=False)
        return report

    def last_reports(self) -> dict[tuple[str, str], DriftReport]:
        """The latest report of each version (for the catalog page)."""
        return dict(self._last)

    def _report(
        self, name: str, version: str, rows: list[Any], entries: list[DatasetEntry]
    ) -> DriftReport:
        s = self.settings
        features = self.features(name, version) or sorted({k for r in rows for k in r})
        found = self.reference(name, version, features, entries)
        if found is None:
            return DriftReport(
                name, version, len(rows), s.min_window, s.drift_p_value, None, (), None,
                "No reference: the model's lineage names no dataset version with its input "
                "columns, and it has no logged input example.",
            )  # fmt: skip
        reference, columns = found
        return compare(name, version, columns, rows, features, s.drift_p_value, s.min_window,
                       reference)  # fmt: skip

    def start(self) -> None:
        """Recompute the drift gauges every ``drift_interval`` seconds (0: never)."""
        if self.enabled and self.settings.drift_interval > 0:
            every = self.settings.drift_interval * 1000
            self._timer = ioloop.PeriodicCallback(self._refresh, every)
            self._timer.start()

    async def _refresh(self) -> None:
        for name, version in self.windows.keys():  # noqa: SIM118 (a method, not a dict)
            try:
                await self.report(name, version)
            except Exception as e:  # a deleted version, an unreachable registry: next time
                log.warning("drift of %s version %s: %s", name, version, e)


class MetricsHandler(CatalogHandler):
    """``GET metrics`` (Prometheus text) for tokens with ``read:metrics``."""

    def get(self) -> None:
        user = self.current_user
        if user is None:
            if self.request.headers.get("Authorization"):
                raise web.HTTPError(
                    403, "This token may not read the catalog's metrics: it needs the scopes "
                    f"{METRICS_SCOPE} and access:services!service=catalog",
                )  # fmt: skip
            raise web.HTTPError(401, f"Authentication required: a hub token with {METRICS_SCOPE}")
        if METRICS_SCOPE not in set(user.get("scopes", [])):
            raise web.HTTPError(403, f"This token lacks the scope {METRICS_SCOPE}")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.app.monitor.metrics.text())


class DriftHandler(ModelRefHandler):
    """``GET api/models/{name}/{alias|version}/drift``."""

    async def get(self, name: str, ref: str) -> None:
        self.require_user()
        version = await self.version_of(name, ref)
        try:
            report = await self.app.monitor.report(name, version)
        except web.HTTPError:
            raise
        except Exception as e:
            raise web.HTTPError(502, f"Cannot compute drift: {str(e)[:300]}") from None
        self.write_json({"ref": ref, **report.to_json()})


def routes(url: Any) -> list[tuple[str, type[CatalogHandler]]]:
    return [
        (url("metrics"), MetricsHandler),
        (url(r"api/models/([^/]+)/([^/]+)/drift"), DriftHandler),
    ]
