"""Shared fixtures: one real JupyterHub (configurable-http-proxy, real single-user servers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hub import HubProcess

# Profiles and quotas of the test platform, added to the embedded default config.
TEST_POLICY = """
c.JupyterHub.cleanup_servers = False
c.Spawner.start_timeout = 90
c.ProfileSpawner.toolchains = {"scipy": {"local_python": None, "env": {"TOOLCHAIN": "scipy"}}}
c.ProfileSpawner.profiles = [
    {"slug": "cpu-small", "toolchain": "scipy", "cpu": {"default": 1, "min": 0.5, "max": 2},
     "memory": {"default": "1G", "max": "2G"}, "groups": ["*"], "idle_timeout": 3600,
     "datasets": ["iris@v1"]},
    {"slug": "gpu-a100", "toolchain": "scipy", "gpu_type": "nvidia-a100",
     "gpu": {"default": 1, "min": 1, "max": 4}, "cpu": {"default": 1, "max": 4},
     "memory": {"default": "1G", "max": "8G"}, "disk": {"default": "10G", "max": "50G"},
     "groups": ["ml-research", "storm"], "idle_timeout": 1800, "env": {"PROFILE_ENV": "gpu"}},
]
c.QuotaPolicy.default = {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0,
                         "gpu_hours_per_week": 0}
c.QuotaPolicy.groups = {
    "ml-research": {"servers": 3, "cpu": 8, "memory": "16G", "gpus": 3,
                    "gpu_hours_per_week": 40},
    "storm": {"servers": 1, "gpus": 1, "gpu_hours_per_week": 10},
}
c.QuotaPolicy.users = {}
c.QuotaPolicy.group_pools = {}
c.QuotaPolicy.pools = {"nvidia-a100": 4}
c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1", "2", "3"]}
c.JupyterHub.load_groups = {
    "ml-research": {"users": ["alice", "carol"]},
    "storm": {"users": [f"storm{i:02d}" for i in range(32)]},
}
"""


@pytest.fixture(autouse=True)
def _keep_the_umask() -> Iterator[None]:
    """configure(c) sets the hub's umask (077) when it runs as root: in a test process,
    that must not leak into the tests after it."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    state: Path = tmp_path_factory.mktemp("hub")
    process = HubProcess(state, TEST_POLICY).start()
    try:
        yield process
    finally:
        process.shutdown()


@pytest.fixture
def clean_hub(hub: HubProcess) -> Iterator[HubProcess]:
    """The session hub, with every server stopped after the test."""
    yield hub
    hub.stop_all_servers()
