"""Notebook jobs from a sandbox: submit, list, read the log, cancel, through the hub's
``/hub/api/dsplatform/jobs`` with the sandbox's own token (it holds
``custom:dsplatform:jobs`` for its user only). The fronts (``%dsdata run/jobs/logs/cancel``,
``dsdata.run_notebook`` …, the Lab command) call these.

Paths are the workspace's: the notebook is given relative to the current directory (or the
workspace) and must be inside it; a job's log and executed notebook are files in the same
workspace (``jobs/<id>/`` beside the notebook), read here directly.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog_client import open_url
from .errors import DsdataError, InvalidReference

HUB = "the hub's job API"


@dataclass(frozen=True)
class JobInfo:
    """One job as the hub records it."""

    id: str
    state: str  # queued, starting, running, succeeded, failed, cancelled, timed-out
    notebook: str
    output: str
    log: str
    parameters: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    submitted: str | None = None
    started: str | None = None
    finished: str | None = None
    duration: float | None = None
    exit_code: int | None = None
    message: str = ""
    position: int | None = None  # in its queue, while queued

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInfo:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _api(path: str = "") -> str:
    base = os.environ.get("JUPYTERHUB_API_URL", "")
    if not base:
        raise DsdataError("This sandbox is not run by a hub (JUPYTERHUB_API_URL): no jobs")
    return f"{base.rstrip('/')}/dsplatform/jobs{path}"


def _call(method: str, path: str = "", body: Any = None) -> Any:
    with open_url(method, _api(path), body, timeout=150, what=HUB) as response:
        return json.load(response)


def workspace() -> Path:
    return Path(os.environ.get("DSPLATFORM_WORKSPACE") or os.getcwd()).resolve()


def notebook_in_workspace(notebook: str, cwd: Path | None = None) -> str:
    """``notebook`` (relative to ``cwd`` or absolute) as a path relative to the workspace."""
    root = workspace()
    path = ((cwd or Path.cwd()) / notebook).resolve()
    if root != path and root not in path.parents:
        raise InvalidReference(f"{notebook!r} is not inside your workspace ({root})")
    if path.suffix != ".ipynb":
        raise InvalidReference(f"{notebook!r} is not a notebook (.ipynb)")
    if not path.is_file():
        raise InvalidReference(f"No notebook {notebook!r}")
    return path.relative_to(root).as_posix()


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "name=run"]`` -> ``{"lr": 0.1, "name": "run"}`` (JSON values where
    they parse: numbers, true/false, null; else the text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InvalidReference(f"Invalid parameter {pair!r}: use name=value (a Python name)")
        try:
            parsed = json.loads(value)
            out[key] = parsed if isinstance(parsed, int | float | bool | type(None)) else value
        except ValueError:
            out[key] = value
    return out


def submit(
    notebook: str,
    *,
    profile: str | None = None,
    cpu: float | None = None,
    memory: str | None = None,
    gpus: int | None = None,
    parameters: dict[str, Any] | None = None,
    wait: bool = False,
    commit: bool = False,
    timeout: int | None = None,
) -> JobInfo:
    """Submit ``notebook`` as a job; refused over quota (with the numbers) unless ``wait``."""
    body: dict[str, Any] = {
        "notebook": notebook_in_workspace(notebook),
        "parameters": parameters or {},
        "wait": wait,
        "commit": commit,
    }
    asked = {"profile": profile or os.environ.get("DSPLATFORM_PROFILE"), "cpu": cpu,
             "memory": memory, "gpus": gpus, "timeout": timeout}  # fmt: skip
    for key, value in asked.items():
        if value is not None:
            body[key] = value
    return JobInfo.from_json(_call("POST", "", body))


def jobs() -> list[JobInfo]:
    return [JobInfo.from_json(j) for j in _call("GET")["jobs"]]


def _job_id(job_id: str) -> str:
    job_id = job_id.strip()
    if not job_id or not all(c in "0123456789abcdef" for c in job_id):
        raise InvalidReference(f"{job_id!r} is not a job id (see %dsdata jobs)")
    if len(job_id) < 12:  # a prefix, as git allows
        found = [j.id for j in jobs() if j.id.startswith(job_id)]
        if len(found) != 1:
            raise InvalidReference(f"{job_id!r} names {len(found)} of your jobs")
        job_id = found[0]
    return job_id


def job(job_id: str) -> JobInfo:
    return JobInfo.from_json(_call("GET", f"/{urllib.parse.quote(_job_id(job_id))}"))


def cancel(job_id: str) -> JobInfo:
    return JobInfo.from_json(_call("DELETE", f"/{urllib.parse.quote(_job_id(job_id))}"))


def logs(job_id: str, tail: int | None = None) -> str:
    """The job's log (papermill's cell output and errors), from the workspace."""
    found = job(job_id)
    path = workspace() / found.log
    if not path.is_file():
        return "" if found.state in ("queued", "starting") else f"(no log at {found.log})"
    text = path.read_text(errors="replace")
    if tail:
        text = "\n".join(text.splitlines()[-tail:])
    return text
