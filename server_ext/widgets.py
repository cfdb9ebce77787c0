"""An ipywidgets dataset browser: pick a dataset and version, pull it, watch the progress.

>>> from server_ext.widgets import DatasetBrowser
>>> DatasetBrowser()
"""

from __future__ import annotations

from typing import Any

from .core import DataService, PullProgress
from .display import datasets_table, human_bytes
from .errors import DsdataError
from .refs import default_target


class DatasetBrowser:
    """A thin front over :class:`~server_ext.core.DataService` (no logic of its own)."""

    def __init__(self, service: DataService | None = None) -> None:
        import ipywidgets as w

        self.service = service or DataService()
        self.entries = {e.name: e for e in self.service.list_datasets()}
        names = sorted(self.entries)
        self.dataset = w.Dropdown(options=names, description="Dataset")
        self.version = w.Dropdown(options=[], description="Version")
        self.path = w.Text(value="", placeholder="data/NAME", description="Into")
        self.force = w.Checkbox(value=False, description="replace local changes")
        self.button = w.Button(description="Pull", button_style="primary", icon="download")
        self.bar = w.FloatProgress(value=0, min=0, max=1, description="")
        self.label = w.Label(value="")
        self.output = w.Output()
        self.dataset.observe(self._on_dataset, names="value")
        self.button.on_click(self._on_pull)
        self._on_dataset({"new": self.dataset.value})
        self.widget = w.VBox(
            [
                w.HBox([self.dataset, self.version]),
                w.HBox([self.path, self.force]),
                w.HBox([self.button, self.bar, self.label]),
                self.output,
            ]
        )

    def _on_dataset(self, change: dict[str, Any]) -> None:
        entry = self.entries.get(change["new"])
        versions = list(reversed(entry.versions)) if entry else []
        in_stages: dict[str, list[str]] = {}
        for stage, version in (entry.stages if entry else {}).items():
            in_stages.setdefault(version, []).append(stage)
        self.version.options = [
            (f"{v} ({', '.join(sorted(in_stages[v]))})" if v in in_stages else v, v)
            for v in versions
        ]
        self.version.value = versions[0] if versions else None
        if entry:
            self.path.placeholder = default_target(entry.name, entry.path, entry.kind == "file")

    def _progress(self, progress: PullProgress) -> None:
        total = progress.bytes_total or 0
        self.bar.value = min(progress.bytes_done / total, 1.0) if total else 0.0
        files = f"{progress.files_done}/{progress.files_total or '?'} files"
        self.label.value = (
            f"{progress.phase}: {human_bytes(progress.bytes_done)} of {human_bytes(total)}, {files}"
        )

    def pull(self) -> Any:
        """What the Pull button does (also callable from code)."""
        name, version = self.dataset.value, self.version.value
        self.button.disabled = True
        try:
            result = self.service.pull(
                f"{name}@{version}" if version else name,
                self.path.value or None,
                force=self.force.value,
                on_progress=self._progress,
            )
        except DsdataError as e:
            self.label.value = f"failed: {e.message}"
            return None
        finally:
            self.button.disabled = False
        self.bar.value = 1.0
        self.label.value = (
            f"{result.dataset}@{result.version} -> {result.path} ({result.files} files)"
        )
        return result

    def _on_pull(self, _button: Any) -> None:
        with self.output:
            self.pull()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return str(datasets_table(list(self.entries.values())))


class ExperimentTable:
    """Recent runs as a table, with a refresh button and a small commit form.

    >>> from server_ext.widgets import ExperimentTable
    >>> ExperimentTable()
    """

    def __init__(self, service: Any = None, n: int = 10) -> None:
        import ipywidgets as w

        from .experiments import ExperimentService
        from .params import parse_pairs

        self._parse_pairs = parse_pairs
        self.service = service or ExperimentService()
        self.n = n
        self.table = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.message = w.Text(placeholder="what changed", description="Message")
        self.params = w.Text(placeholder="lr=0.1 depth=3", description="Params")
        self.metrics = w.Text(placeholder="auc=0.91", description="Metrics")
        self.outputs = w.Text(placeholder="model/", description="Outputs")
        self.commit_button = w.Button(description="Commit", button_style="primary")
        self.status = w.Label()
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.commit_button.on_click(lambda _b: self.commit())
        self.widget = w.VBox(
            [
                w.HBox([self.refresh_button, self.status]),
                self.table,
                w.HBox([self.message, self.params]),
                w.HBox([self.metrics, self.outputs, self.commit_button]),
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        from .display import runs_table

        try:
            self.table.value = runs_table(self.service.log(self.n))._repr_html_()
        except DsdataError as e:
            self.status.value = f"cannot list runs: {e.message}"

    def commit(self) -> Any:
        """What the Commit button does (also callable from code)."""
        try:
            result = self.service.commit(
                self.message.value,
                params=self._parse_pairs(self.params.value.split(), "param"),
                metrics=self._parse_pairs(self.metrics.value.split(), "metric"),
                outputs=self.outputs.value.split(),
            )
        except DsdataError as e:
            self.status.value = f"commit failed: {e.message}"
            return None
        where = f"run {result.run_id[:12]}" if result.run_id else "run queued"
        self.status.value = f"committed {result.git_sha[:10]} ({where}) {result.note}".strip()
        self.refresh()
        return result

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class ConnectionsBrowser:
    """The lake and the warehouse as widgets: pick a connection, browse a prefix (or see the
    tables), import a path or a query as a dataset. A thin front over
    :mod:`server_ext.connections` (the platform's catalog does the work)."""

    def __init__(self, client: Any = None) -> None:
        import ipywidgets as w

        from . import connections

        self.client = client or connections
        self.connections = {c["name"]: c for c in self.client.connections()}
        self.connection = w.Dropdown(options=sorted(self.connections), description="Connection")
        self.prefix = w.Text(value="", placeholder="2026-11/", description="Prefix")
        self.browse_button = w.Button(description="Browse", icon="folder-open")
        self.query = w.Textarea(value="", placeholder="SELECT ... (warehouse)", description="Query")
        self.as_name = w.Text(value="", placeholder="clicks", description="Dataset")
        self.import_button = w.Button(description="Import", button_style="primary", icon="upload")
        self.label = w.Label(value="")
        self.output = w.Output()
        self.browse_button.on_click(lambda _: self._in_output(self.browse))
        self.import_button.on_click(lambda _: self._in_output(self.do_import))
        self.widget = w.VBox(
            [
                w.HBox([self.connection, self.prefix, self.browse_button]),
                self.query,
                w.HBox([self.as_name, self.import_button, self.label]),
                self.output,
            ]
        )

    def _in_output(self, action: Any) -> None:
        with self.output:
            action()

    def browse(self) -> Any:
        """What Browse does: one level under the prefix, or the tables (also from code)."""
        from IPython.display import display

        from .display import browse_table

        try:
            found = self.client.browse(self.connection.value, self.prefix.value)
        except DsdataError as e:
            self.label.value = f"failed: {e.message}"
            return None
        display(browse_table(found))
        self.label.value = f"browsed {self.connection.value}:{self.prefix.value}"
        return found

    def do_import(self) -> Any:
        """What Import does: the prefix (lake) or the query (warehouse) as the dataset."""
        name = self.connection.value
        kind = self.connections.get(name, {}).get("type")
        source = name if kind == "sql" else f"{name}:{self.prefix.value}"
        self.import_button.disabled = True
        try:
            result = self.client.import_data(
                source, as_name=self.as_name.value, query=self.query.value or None
            )
        except DsdataError as e:
            self.label.value = f"failed: {e.message}"
            return None
        finally:
            self.import_button.disabled = False
        state = "new version" if result.created else "unchanged"
        self.label.value = f"{result.dataset}@{result.version} ({state})"
        return result

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
