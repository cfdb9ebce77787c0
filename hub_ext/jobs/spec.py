"""What a job asks for, validated (pure): the notebook, resources, parameters, options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

SERVER_PREFIX = "job-"
ID_RE = re.compile(r"^[0-9a-f]{12}$")
RESOURCE_KEYS = ("profile", "cpu", "memory", "gpus", "disk")
KEYS = {*RESOURCE_KEYS, "notebook", "parameters", "wait", "commit", "timeout"}
MAX_PARAMETERS = 100


class JobRequestError(ValueError):
    """An invalid job request: the reason, answered as 400."""


@dataclass(frozen=True)
class JobSpec:
    notebook: str  # relative to the workspace
    options: dict[str, Any]  # the server's user_options (profile and resources)
    parameters: dict[str, Any] = field(default_factory=dict)
    wait: bool = False
    commit: bool = False
    timeout: int | None = None  # seconds; None: the platform's max_runtime

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(**{k: data[k] for k in ("notebook", "options", "parameters", "wait",
                                           "commit", "timeout") if k in data})  # fmt: skip


def notebook_path(value: Any) -> str:
    """A notebook inside the workspace: relative, no ``..``, ending in ``.ipynb``."""
    if not isinstance(value, str) or not value.strip():
        raise JobRequestError("notebook: the path of a notebook in your workspace is needed")
    path = PurePosixPath(value.strip())
    if path.is_absolute() or any(p in ("..", "") for p in path.parts) or "\\" in value:
        raise JobRequestError(f"notebook: {value[:200]!r} is not a path inside your workspace")
    if path.suffix != ".ipynb":
        raise JobRequestError(f"notebook: {value[:200]!r} is not a notebook (.ipynb)")
    return str(path)


def parse_spec(body: Any, max_runtime: int) -> JobSpec:
    """A request body (JSON) as a :class:`JobSpec`, or :class:`JobRequestError`."""
    if not isinstance(body, Mapping):
        raise JobRequestError("The request body must be a JSON object")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise JobRequestError(f"Unknown keys {', '.join(map(str, unknown))}; known: "
                              f"{', '.join(sorted(KEYS))}")  # fmt: skip
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, Mapping) or len(parameters) > MAX_PARAMETERS:
        raise JobRequestError(f"parameters: an object of at most {MAX_PARAMETERS} names")
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise JobRequestError(f"parameters: {str(name)[:100]!r} is not a Python name")
        if not isinstance(value, str | int | float | bool | type(None)):
            raise JobRequestError(f"parameters: {name} must be a string, number, "
                                  "boolean or null")  # fmt: skip
    for flag in ("wait", "commit"):
        if not isinstance(body.get(flag, False), bool):
            raise JobRequestError(f"{flag}: true or false")
    timeout = body.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise JobRequestError("timeout: a positive number of seconds")
        if timeout > max_runtime:
            raise JobRequestError(f"timeout: at most {max_runtime} s "
                                  "(c.NotebookJobs.max_runtime)")  # fmt: skip
    options = {k: body[k] for k in RESOURCE_KEYS if body.get(k) is not None}
    return JobSpec(notebook_path(body.get("notebook")), options, dict(parameters),
                   bool(body.get("wait", False)), bool(body.get("commit", False)),
                   timeout)  # fmt: skip


def server_name(job_id: str) -> str:
    return SERVER_PREFIX + job_id


def job_id_of(server: str) -> str | None:
    """The job id of a server name (``job-<12 hex>``), else None."""
    if not server.startswith(SERVER_PREFIX):
        return None
    rest = server[len(SERVER_PREFIX) :]
    return rest if ID_RE.match(rest) else None
