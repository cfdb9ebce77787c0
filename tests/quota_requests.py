"""The requests and quota tables the quota and ledger tests share: real ones, resolved by
``hub_ext.admission.options.resolve_request`` against profiles parsed by
``hub_ext.admission.profiles.parse_profiles``."""

from __future__ import annotations

from typing import Any

from hub_ext.admission.options import Request, resolve_request
from hub_ext.admission.profiles import parse_profiles
from hub_ext.admission.quota import QuotaTables

G = 1024**3
PROFILES = parse_profiles(
    [
        {
            "slug": "cpu",
            "cpu": {"default": 1, "min": 0.5, "max": 16},
            "memory": {"default": "2G", "min": "1G", "max": "256G"},
        },
        {
            "slug": "gpu",
            "gpu_type": "nvidia-a100",
            "gpu": {"default": 1, "min": 0, "max": 8},
            "cpu": {"default": 1, "min": 0.5, "max": 16},
            "memory": {"default": "2G", "min": "1G", "max": "256G"},
            "disk": {"default": "20G", "max": "200G"},
            "groups": ["ml-research", "vision"],
        },
        {
            "slug": "h100",
            "gpu_type": "nvidia-h100",
            "gpu": {"default": 1, "min": 1, "max": 8},
            "groups": ["ml-research"],
        },
    ],
    {},
)
ALL_GROUPS = ["ml-research", "vision"]


def req(profile: str = "cpu", **options: Any) -> Request:
    return resolve_request({"profile": profile, **options}, PROFILES, ALL_GROUPS)


# The quota section of docs/contract.md.
DESIGN_QUOTAS: dict[str, Any] = {
    "default": {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0},
    "groups": {
        "ml-research": {
            "servers": 2,
            "cpu": 32,
            "memory": "128G",
            "gpus": 4,
            "gpu_hours_per_week": 40,
        }
    },
    "users": {"alice": {"gpus": 8}},
    "group_pools": {"ml-research": {"gpus": 6}},
    "pools": {"nvidia-a100": 8},
}
DESIGN = QuotaTables.from_raw(**DESIGN_QUOTAS)
