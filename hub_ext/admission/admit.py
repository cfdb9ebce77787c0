"""The one admission decision: the user's options, the policy and what is held now, in;
a reserved :class:`~hub_ext.admission.reservations.Grant` or a
:class:`~hub_ext.admission.refusals.Refusal` out.

The spawner (:meth:`hub_ext.spawners.base.ProfileSpawner.admit`), the usage report (which
previews each profile without reserving) and ``bench/bench_quota.py`` all call these, so
the sequence resolve -> GPU-hours -> reserve exists once. Nothing here awaits: called from
the hub's event loop, a decision and its reservation are atomic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub_ext.admission.options import Request, resolve_request
from hub_ext.admission.policy import Policy
from hub_ext.admission.quota import check_request
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger

# GPU-hours a user has used this ISO week (the hub database); asked only for GPU requests
HoursUsed = Callable[[str], float]


@dataclass(frozen=True)
class Applicant:
    """Who asks: a hub user, the server's name ("" for the default) and their groups."""

    user: str
    server: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Admission:
    """A granted request: what was asked (inside the profile) and what is now reserved."""

    request: Request
    grant: Grant


def admit(
    options: Mapping[str, Any] | None,
    applicant: Applicant,
    policy: Policy,
    ledger: Ledger,
    hours_used: HoursUsed,
    kind: str = "server",
) -> Admission:
    """Validate ``options`` and reserve the resources in ``ledger``.

    Args:
        options: ``user_options``, e.g. ``{"profile": "gpu-a100", "gpus": 2}``.
        applicant: the user, server name and hub groups.
        policy: the validated admin policy (profiles, quotas, local GPU devices).
        ledger: the hub's reservations; changed only when the request is granted.
        hours_used: the user's GPU-hours this week, asked for GPU requests only.
        kind: ``server``, ``job`` or ``worker`` (only servers count against ``servers``).

    Raises:
        Refusal: ``invalid`` (400), ``forbidden`` (403), ``quota`` (403), ``capacity`` (503).

    Examples:
        >>> admit({"profile": "cpu-small"}, Applicant("alice"), policy, Ledger(), lambda u: 0)
        Admission(request=Request(...), grant=Grant(...))
    """
    request = resolve_request(options, policy.profiles, applicant.groups)
    hours = hours_used(applicant.user) if request.gpus else 0.0
    grant = ledger.reserve(
        request,
        user=applicant.user,
        server=applicant.server,
        groups=applicant.groups,
        tables=policy.quotas,
        devices=policy.gpu_devices,
        gpu_hours_used=hours,
        kind=kind,
    )
    return Admission(request, grant)


def preview(
    options: Mapping[str, Any] | None,
    applicant: Applicant,
    policy: Policy,
    ledger: Ledger,
    hours_used: HoursUsed,
    kind: str = "server",
) -> Refusal | None:
    """What :func:`admit` would say to a *new* server with ``options`` now, reserving
    nothing: None when it would be granted, else the refusal it would raise."""
    try:
        request = resolve_request(options, policy.profiles, applicant.groups)
        hours = hours_used(applicant.user) if request.gpus else 0.0
        standing = ledger.standing(
            applicant.user,
            applicant.groups,
            policy.quotas,
            policy.gpu_devices,
            request.gpu_type,
            gpu_hours_used=hours,
        )
        check_request(request, standing, kind)
    except Refusal as refusal:
        return refusal
    return None
