"""The jupyter-server extension: the data core behind REST, in every sandbox."""

from __future__ import annotations

from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Int, Unicode

from .core import DataService
from .experiments import ExperimentService
from .handlers import route_table
from .jobs import PullJobs


class DsdataApp(ExtensionApp):
    """``/dsdata/api/``: datasets, pulls (202 + id, poll or Server-Sent Events), lineage,
    experiments (commit, log) and models (publish, list)."""

    name = "server_ext"
    load_other_extensions = True

    cache_dir = Unicode(
        "",
        help="Shared dataset cache; default $DSDATA_CACHE_DIR, else ~/.cache/dsdata.",
    ).tag(config=True)

    pull_workers = Int(2, help="Pulls that may run at once in this server.").tag(config=True)

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        root = Path(self.serverapp.root_dir)
        service = DataService(root=root, cache_dir=Path(self.cache_dir) if self.cache_dir else None)
        self.settings.update(
            dsdata_service=service,
            dsdata_jobs=PullJobs(service, workers=self.pull_workers),
            dsdata_experiments=ExperimentService(root=root),
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())

    async def stop_extension(self) -> None:
        jobs: PullJobs | None = self.settings.get("dsdata_jobs")
        if jobs is not None:
            jobs.shutdown()
