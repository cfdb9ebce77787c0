"""An ipywidgets dataset browser: pick a dataset and version, pull it, watch the progress.

>>> from server_ext.widgets import DatasetBrowser
>>> DatasetBrowser()
"""

from __future__ import annotations

from typing import Any

from .core import DataService, PullProgress
from .display import datasets_table, human_bytes
from .errors import DsdataError


class DatasetBrowser:
    """A thin front over :class:`~server_ext.core.DataService` (no logic of its own)."""

    def __init__(self, service: DataService | None = None) -> None:
        import ipywidgets as w

        self.service = service or DataService()
        self.entries = {e["name"]: e for e in self.service.list_datasets()}
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
        versions = list(reversed(entry["versions"])) if entry else []
        self.version.options = versions
        self.version.value = versions[0] if versions else None
        if entry:
            self.path.placeholder = f"data/{entry['name']}"

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
