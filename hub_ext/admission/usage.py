"""The numbers a user sees: limits, usage, pools and startable profiles (one report).

Both the usage API (``GET /hub/api/dsplatform/usage``) and the spawn form render
:func:`usage_report`, so they never disagree. Whether each profile can start now is
:func:`hub_ext.admission.admit.preview`, the same decision a spawn gets.
"""

from __future__ import annotations

from typing import Any

from hub_ext.admission.admit import Applicant, HoursUsed, preview
from hub_ext.admission.options import startable_profiles
from hub_ext.admission.policy import Policy
from hub_ext.admission.quota import POOL_KEYS, effective_limits, gpu_capacity
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Ledger
from hub_ext.admission.units import format_bytes


def _show(key: str, value: float | None) -> Any:
    if value is None:
        return None
    if key == "memory":
        return format_bytes(value)
    if key in ("servers", "gpus"):
        return int(value)
    return round(value, 3)


def usage_report(
    policy: Policy, ledger: Ledger, applicant: Applicant, hours_used: HoursUsed
) -> dict[str, Any]:
    """Everything the spawn form and the usage API show for ``applicant``.

    Returns:
        ``{"user", "groups", "limits", "limit_sources", "usage", "remaining", "pools",
        "group_pools", "profiles", "profile_details", "unavailable_profiles"}``; a limit of
        ``None`` is unlimited.
        Each profile detail says whether its default request would start now
        (``"startable"``) and, if not, the refusal (``"refusal": {"reason", "message"}``).
    """
    user, groups = applicant.user, applicant.groups
    gpu_hours_used = hours_used(user)
    limits = effective_limits(policy.quotas, user, groups)
    usage = ledger.usage(user)
    remaining = {
        key: (max(limits[key].value - usage.get(key), 0) if key in limits else None)
        for key in POOL_KEYS
    }
    gpu_types = sorted(
        set(policy.quotas.pools)
        | set(policy.gpu_devices)
        | {p.gpu_type for p in policy.profiles if p.gpu_type and p.gpu.max > 0}
    )
    pools: dict[str, dict[str, Any]] = {}
    for gpu_type in gpu_types:
        total = gpu_capacity(policy.quotas, policy.gpu_devices, gpu_type)
        used = ledger.gpus_in_use(gpu_type)
        pools[gpu_type] = {
            "total": total,
            "used": used,
            "free": None if total is None else max(total - used, 0),
        }
    group_pools = {}
    for group in sorted(g for g in groups if g in policy.quotas.group_pools):
        size = policy.quotas.group_pools[group]
        held = ledger.group_usage(group)
        group_pools[group] = {
            "limits": {k: _show(k, v) for k, v in size.items()},
            "used": {k: _show(k, held.get(k)) for k in size},
        }
    allowed = startable_profiles(policy.profiles, groups)
    gpu_hours_limit = limits.get("gpu_hours_per_week")
    return {
        "user": user,
        "groups": sorted(groups),
        "limits": {
            key: _show(key, limits[key].value if key in limits else None)
            for key in (*POOL_KEYS, "gpu_hours_per_week")
        },
        "limit_sources": {key: limit.source for key, limit in limits.items()},
        "usage": {**usage.as_dict(), "gpu_hours_this_week": round(gpu_hours_used, 4)},
        "remaining": {
            **{key: _show(key, value) for key, value in remaining.items()},
            "gpu_hours_this_week": None
            if gpu_hours_limit is None
            else round(max(gpu_hours_limit.value - gpu_hours_used, 0), 4),
        },
        "pools": pools,
        "group_pools": group_pools,
        "profiles": [p.slug for p in allowed],
        "profile_details": [
            _with_preview(
                p.describe(),
                preview({"profile": p.slug}, applicant, policy, ledger, lambda _: gpu_hours_used),
            )
            for p in allowed
        ],
        # profiles the user's groups may not start, and the groups that may (for the form)
        "unavailable_profiles": [
            {"slug": p.slug, "display_name": p.display_name, "groups": list(p.groups)}
            for p in policy.profiles
            if p not in allowed
        ],
    }


def _with_preview(detail: dict[str, Any], refusal: Refusal | None) -> dict[str, Any]:
    detail["startable"] = refusal is None
    detail["refusal"] = (
        None if refusal is None else {"reason": refusal.reason, "message": refusal.message}
    )
    return detail
