"""Progress bars for pulls: tqdm (a widget in notebooks via ipywidgets, text elsewhere)."""

from __future__ import annotations

from typing import Any

from .core import PullProgress


class PullBar:
    """Feed :class:`PullProgress` updates into a tqdm bar with bytes and files."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self.bar: Any = None

    def __call__(self, progress: PullProgress) -> None:
        if self.disable:
            return
        if self.bar is None and progress.phase in ("downloading", "linking", "done"):
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=progress.bytes_total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"pull {progress.dataset}",
                leave=True,
            )
        if self.bar is None:
            return
        self.bar.n = min(progress.bytes_done, progress.bytes_total or progress.bytes_done)
        total_files = progress.files_total if progress.files_total is not None else "?"
        self.bar.set_postfix_str(f"{progress.files_done}/{total_files} files, {progress.phase}")
        self.bar.refresh()
        if progress.phase == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
