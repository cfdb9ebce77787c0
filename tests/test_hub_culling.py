"""Per-profile idle culling through jupyterhub-idle-culler as a hub-managed service."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .hub import HubProcess

pytestmark = pytest.mark.hub

CULLING = """
c.PlatformIdleCulling.cull_every = 2
c.ProfileSpawner.profiles = [
    {"slug": "quick", "cpu": 0.5, "memory": "1G", "idle_timeout": 8},
    {"slug": "never", "cpu": 0.5, "memory": "1G", "idle_timeout": 0},
]
c.QuotaPolicy.default = {"servers": 2, "cpu": 2, "memory": "4G"}
"""


def test_idle_servers_are_culled_per_profile(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path, CULLING).start()
    try:
        assert hub.spawn("dora", "n", {"profile": "never"}).status_code in (201, 202)
        hub.wait_ready("dora", "n")
        assert hub.spawn("dora", "q", {"profile": "quick"}).status_code in (201, 202)
        hub.wait_ready("dora", "q")
        deadline = time.monotonic() + 45
        while hub.server_model("dora", "q") is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert hub.server_model("dora", "q") is None, hub.log()
        assert hub.server_model("dora", "n") is not None
        # the culled server's reservation went back
        assert hub.usage("dora")["usage"]["servers"] == 1
        assert "Culling server dora/q" in hub.log()
    finally:
        hub.shutdown()
