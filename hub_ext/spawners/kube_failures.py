"""Why a pod will not start, read from its status while the spawn waits (pure).

KubeSpawner waits for a pod until ``start_timeout`` whatever happens to it. A pod the
scheduler cannot place (``PodScheduled`` False, reason ``Unschedulable``) or whose image
cannot be pulled (a container waiting with ``ErrImagePull``/``ImagePullBackOff``/
``InvalidImageName``) will not start by waiting; :func:`start_failure` recognises these
(and init containers or containers that exited with an error) so the spawn ends at once
with the cluster's own reason.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

UNSCHEDULABLE = "Unschedulable"
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
INIT_FAILED = "InitContainerFailed"
CONTAINER_FAILED = "ContainerFailed"
POD_FAILED = "PodFailed"

# Every reason start_failure knows; the default of c.ProfileKubeSpawner.fail_fast_on.
FAIL_FAST_REASONS = (
    UNSCHEDULABLE,
    *IMAGE_REASONS,
    *CONFIG_REASONS,
    INIT_FAILED,
    CONTAINER_FAILED,
    POD_FAILED,
)


@dataclass(frozen=True)
class StartFailure:
    """A pod that will not become ready; ``label`` is the SpawnException reason label."""

    reason: str
    message: str
    label: str
    status_code: int


def _statuses(pod: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    return (pod.get("status") or {}).get(key) or []


def _tail(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]


def start_failure(
    pod: Mapping[str, Any] | None, reasons: Collection[str] = FAIL_FAST_REASONS
) -> StartFailure | None:
    """The reason ``pod`` cannot start, or None while it may still start.

    Args:
        pod: the pod as the API returns it (a dict with ``status``).
        reasons: the failure reasons to act on (a subset of :data:`FAIL_FAST_REASONS`).
    """
    if not pod:
        return None
    name = (pod.get("metadata") or {}).get("name", "the pod")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == UNSCHEDULABLE
            and UNSCHEDULABLE in reasons
        ):
            return StartFailure(
                UNSCHEDULABLE,
                f"The cluster cannot place {name} (FailedScheduling: "
                f"{condition.get('message') or 'no node fits'}). "
                "Choose fewer resources or try again later.",
                "unschedulable",
                503,
            )
    for kind, key in (
        ("init container", "initContainerStatuses"),
        ("container", "containerStatuses"),
    ):
        for cs in _statuses(pod, key):
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            why = waiting.get("reason", "")
            detail = waiting.get("message") or ""
            if why in IMAGE_REASONS and why in reasons:
                return StartFailure(
                    why,
                    f"Image {cs.get('image', '?')} of {kind} {cs.get('name')} cannot be pulled "
                    f"({why}{': ' + _tail(detail) if detail else ''}).",
                    "image",
                    502,
                )
            if why in CONFIG_REASONS and why in reasons:
                return StartFailure(
                    why,
                    f"The {kind} {cs.get('name')} cannot be created "
                    f"({why}{': ' + _tail(detail) if detail else ''}).",
                    "container",
                    502,
                )
            failure = _exited(cs, kind)
            if failure is not None and failure.reason in reasons:
                return failure
    if status.get("phase") == "Failed" and POD_FAILED in reasons:
        return StartFailure(
            POD_FAILED,
            f"Pod {name} failed ({status.get('reason') or 'Failed'}"
            f"{': ' + _tail(status['message']) if status.get('message') else ''}).",
            "container",
            502,
        )
    return None


def _exited(cs: Mapping[str, Any], kind: str) -> StartFailure | None:
    """A container that ran and exited with an error (now or before a restart)."""
    for state_key in ("state", "lastState"):
        terminated = (cs.get(state_key) or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if code:
            message = terminated.get("message") or terminated.get("reason") or ""
            return StartFailure(
                INIT_FAILED if kind == "init container" else CONTAINER_FAILED,
                f"The {kind} {cs.get('name')} exited with code {code}"
                f"{': ' + _tail(message) if message else ''}.",
                "container",
                502,
            )
    return None
