"""GPU inventory of the local machine (``nvidia-smi``), for local-mode device lists."""

from __future__ import annotations

import re
import shutil
import subprocess


def gpu_type_name(product: str) -> str:
    """``"NVIDIA A100-SXM4-80GB"`` -> ``"nvidia-a100-sxm4-80gb"`` (a profile ``gpu_type``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", product.lower()).strip("-")
    return slug if slug.startswith("nvidia") else f"nvidia-{slug}"


def parse_nvidia_smi(output: str) -> dict[str, list[str]]:
    """Parse ``nvidia-smi --query-gpu=index,name --format=csv,noheader`` (pure)."""
    devices: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "," not in line:
            continue
        index, name = (part.strip() for part in line.split(",", 1))
        if index.isdigit() and name:
            devices.setdefault(gpu_type_name(name), []).append(index)
    return devices


def detect_nvidia_gpus(timeout: float = 10) -> dict[str, list[str]]:
    """Device ids per GPU type on this machine; ``{}`` when there is no NVIDIA driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_nvidia_smi(out)
