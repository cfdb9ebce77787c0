"""The data core as plain Python functions: ``from server_ext import dsdata``.

Examples:
    >>> from server_ext import dsdata
    >>> dsdata.pull("iris@v1")            # into data/iris of the current project
    >>> dsdata.status()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core import DataService, ProgressCallback, PullResult
from .experiments import CommitResult, ExperimentService
from .models import ModelService


def service(root: Path | None = None) -> DataService:
    """A :class:`DataService` for the project containing ``root`` (default: cwd)."""
    return DataService(root=root)


def list_datasets() -> list[dict[str, Any]]:
    """Datasets you may pull, with their versions (as the REST API lists them)."""
    return [entry.to_json() for entry in service().list_datasets()]


def info(name: str) -> dict[str, Any]:
    """A dataset's description, source and versions (size, files, content hash)."""
    return service().info(name).to_json()


def pull(
    dataset: str,
    path: str | None = None,
    *,
    force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> PullResult:
    """Fetch ``NAME[@VERSION]`` into ``path`` (default ``data/NAME``), atomically.

    Raises:
        server_ext.errors.DsdataError: with a message saying what to do.
    """
    return service().pull(dataset, path, force=force, on_progress=on_progress)


def status() -> list[dict[str, Any]]:
    """Each pulled dataset, where it is, and whether it changed since the pull."""
    return service().status()


def experiments(root: Path | None = None) -> ExperimentService:
    return ExperimentService(root=root)


def commit(
    message: str,
    *,
    params: dict[str, str] | None = None,
    metrics: dict[str, Any] | None = None,
    params_file: str | None = None,
    metrics_file: str | None = None,
    outputs: list[str] | None = None,
    model: str | None = None,
) -> CommitResult:
    """Commit code (git), outputs (DVC), params, metrics and environment as one MLflow run;
    ``model`` (an MLflow model directory or a pickled estimator) becomes the run's model."""
    return experiments().commit(
        message,
        params=params,
        metrics=metrics,
        params_file=params_file,
        metrics_file=metrics_file,
        outputs=outputs or [],
        model=model,
    )


def log(n: int = 10) -> list[dict[str, Any]]:
    """Recent runs of this project (queued ones first)."""
    return experiments().log(n)


def sync() -> dict[str, str]:
    """Send runs queued while MLflow was unreachable; commit id -> run id."""
    return experiments().sync()


def reproduce(run_id: str, directory: str | None = None) -> dict[str, Any]:
    """Recreate a run: its code, exact dataset versions and outputs, with hash checks."""
    return experiments().reproduce(run_id, directory)


def publish(
    model: str, *, path: str | None = None, run_id: str | None = None, alias: str | None = None
) -> dict[str, Any]:
    """Register a model version in the MLflow Model Registry, tagged with its lineage."""
    return ModelService(experiments()).publish(model, path=path, run_id=run_id, alias=alias)


def promote(model: str, version: int | str, *, alias: str, note: str = "") -> dict[str, Any]:
    """Request a reviewed promotion of ``version`` to the protected ``alias``."""
    return ModelService(experiments()).promote(model, version, alias, note)


def model_history(model: str) -> dict[str, Any]:
    """Every promotion request, decision and rollback of ``model``."""
    return ModelService(experiments()).history(model)


def models() -> list[dict[str, Any]]:
    """Registered models with versions and aliases."""
    return ModelService(experiments()).list_models()


def connections() -> list[dict[str, Any]]:
    """The data-lake and warehouse connections your groups may use."""
    from . import connections as conn

    return conn.connections()


def browse(connection: str, prefix: str = "") -> dict[str, Any]:
    """Objects and sizes under ``prefix`` (S3), or tables and columns (SQL)."""
    from . import connections as conn

    return conn.browse(connection, prefix)


def import_data(
    source: str, *, as_name: str, query: str | None = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Import ``CONN:PATH`` (S3) or ``CONN`` with ``query`` (SQL) as dataset ``as_name``:
    a new version when the source changed, with lineage; then pull it like any dataset."""
    from . import connections as conn

    return conn.import_data(source, as_name=as_name, query=query, params=params).as_dict()


def run_notebook(
    notebook: str,
    *,
    parameters: dict[str, Any] | None = None,
    profile: str | None = None,
    cpu: float | None = None,
    memory: str | None = None,
    gpus: int | None = None,
    wait: bool = False,
    commit: bool = False,
    timeout: int | None = None,
) -> dict[str, Any]:
    """Run ``notebook`` as a job (papermill, under your quotas): the job as the hub records
    it (``id``, ``state``, ``position`` while queued). Over quota: refused with the numbers,
    unless ``wait`` (then it waits in its group's queue)."""
    from . import notebook_jobs as nj

    return nj.submit(notebook, parameters=parameters, profile=profile, cpu=cpu, memory=memory,
                     gpus=gpus, wait=wait, commit=commit, timeout=timeout).as_dict()  # fmt: skip


def jobs() -> list[dict[str, Any]]:
    """Your notebook jobs, newest first."""
    from . import notebook_jobs as nj

    return [j.as_dict() for j in nj.jobs()]


def job_logs(job_id: str, tail: int | None = None) -> str:
    """A job's log (its cells' output and errors)."""
    from . import notebook_jobs as nj

    return nj.logs(job_id, tail)


def cancel_job(job_id: str) -> dict[str, Any]:
    """Stop a job (its whole process tree) or take it out of the queue."""
    from . import notebook_jobs as nj

    return nj.cancel(job_id).as_dict()
