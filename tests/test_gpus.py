"""GPU inventory from ``nvidia-smi --query-gpu=index,name --format=csv,noheader``."""

from __future__ import annotations

import shutil

import pytest

from hub_ext.admission.profiles import GPU_TYPE_RE
from hub_ext.spawners.gpus import detect_nvidia_gpus, gpu_type_name, parse_nvidia_smi


@pytest.mark.parametrize(
    "product, expected",
    [
        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"),
        ("Tesla V100-SXM2-16GB", "nvidia-tesla-v100-sxm2-16gb"),
        ("Tesla T4", "nvidia-tesla-t4"),
        ("NVIDIA L40S", "nvidia-l40s"),
        ("  NVIDIA  A10G  ", "nvidia-a10g"),
        ("NVIDIA H200 NVL (MIG 1g.18gb)", "nvidia-h200-nvl-mig-1g-18gb"),
        ("nvidia-a100", "nvidia-a100"),  # already a type name: unchanged
    ],
)
def test_gpu_type_name(product, expected):
    name = gpu_type_name(product)
    assert name == expected
    assert GPU_TYPE_RE.match(name)  # usable as a profile's gpu_type


SMI_TWO_TYPES = """\
0, NVIDIA A100-SXM4-80GB
1, NVIDIA A100-SXM4-80GB

2, NVIDIA H100 80GB HBM3
3, NVIDIA A100-SXM4-80GB
"""

SMI_GARBAGE = """\
NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.
index, name
Failed to initialize NVML: Driver/library version mismatch
x, NVIDIA A100
7,
 , NVIDIA T4
-1, NVIDIA T4
1.5, NVIDIA T4
4 , Tesla T4
"""


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            SMI_TWO_TYPES,
            {"nvidia-a100-sxm4-80gb": ["0", "1", "3"], "nvidia-h100-80gb-hbm3": ["2"]},
        ),
        ("0, NVIDIA H100 80GB HBM3\n", {"nvidia-h100-80gb-hbm3": ["0"]}),
        ("0, NVIDIA H100 80GB HBM3", {"nvidia-h100-80gb-hbm3": ["0"]}),  # no final newline
        ("0, NVIDIA L4\r\n1, NVIDIA L4\r\n", {"nvidia-l4": ["0", "1"]}),  # CRLF
        ("\n\n   \n", {}),
        ("", {}),
        ("No devices were found\n", {}),
        (SMI_GARBAGE, {"nvidia-tesla-t4": ["4"]}),
        ("0, NVIDIA A100, extra\n", {"nvidia-a100-extra": ["0"]}),  # name keeps the rest
    ],
)
def test_parse_nvidia_smi(output, expected):
    assert parse_nvidia_smi(output) == expected


def test_parse_nvidia_smi_output_is_valid_gpu_devices_config():
    from hub_ext.admission.policy import parse_gpu_devices

    devices = parse_nvidia_smi(SMI_TWO_TYPES)
    assert parse_gpu_devices(devices) == {
        "nvidia-a100-sxm4-80gb": ("0", "1", "3"),
        "nvidia-h100-80gb-hbm3": ("2",),
    }


def test_detect_nvidia_gpus_matches_this_machine():
    detected = detect_nvidia_gpus()
    if shutil.which("nvidia-smi") is None:
        assert detected == {}
    else:
        for gpu_type, ids in detected.items():
            assert GPU_TYPE_RE.match(gpu_type)
            assert all(i.isdigit() for i in ids)
