"""Hub restarts with sandboxes running: reservations and GPU-hours survive, exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import TEST_POLICY
from .hub import HubProcess

pytestmark = pytest.mark.hub


def test_restart_keeps_accounting(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path, TEST_POLICY).start()
    try:
        assert hub.spawn("alice", "r1", {"profile": "gpu-a100", "gpus": 2}).status_code in (
            201,
            202,
        )
        assert hub.spawn("carol", "", {"profile": "gpu-a100", "gpus": 1}).status_code in (201, 202)
        hub.wait_ready("alice", "r1")
        hub.wait_ready("carol")
        carol_pid = hub.server_state("carol")["pid"]
        alice_before = hub.usage("alice")
        assert alice_before["usage"]["gpus"] == 2
        assert alice_before["pools"]["nvidia-a100"]["used"] == 3
        hours_before = alice_before["usage"]["gpu_hours_this_week"]
        assert hours_before > 0

        hub.stop()  # servers keep running: cleanup_servers = False
        os.kill(carol_pid, signal.SIGTERM)  # carol's sandbox dies while the hub is down
        time.sleep(1)
        hub.start()

        alice_after = hub.usage("alice")
        assert alice_after["usage"]["gpus"] == 2 and alice_after["usage"]["servers"] == 1
        # carol's reservation was released exactly once; alice's is held exactly once
        assert hub.usage("carol")["usage"]["servers"] == 0
        assert alice_after["pools"]["nvidia-a100"] == {"total": 4, "used": 2, "free": 2}
        # GPU-hours kept accumulating across the restart
        assert alice_after["usage"]["gpu_hours_this_week"] > hours_before

        # no double reservation: the same numbers drive the next decision
        r = hub.spawn("alice", "r2", {"profile": "gpu-a100", "gpus": 2})
        assert r.status_code == 403
        assert r.json()["message"] == (
            "GPU quota exceeded: ml-research allows 3 GPUs per user; running 2 + requested 2 = 4"
        )
        # devices restored: the next grant gets a free device, not alice's 0 and 1
        assert hub.spawn("carol", "", {"profile": "gpu-a100", "gpus": 1}).status_code in (201, 202)
        hub.wait_ready("carol")
        environ = Path(f"/proc/{hub.server_state('carol')['pid']}/environ").read_bytes()
        assert b"CUDA_VISIBLE_DEVICES=2\0" in environ

        hub.stop_server("alice", "r1")
        stopped = hub.usage("alice")
        assert stopped["usage"]["gpus"] == 0
        assert stopped["pools"]["nvidia-a100"]["used"] == 1
        hours_at_stop = stopped["usage"]["gpu_hours_this_week"]
        time.sleep(1.5)
        assert hub.usage("alice")["usage"]["gpu_hours_this_week"] == hours_at_stop
    finally:
        hub.shutdown()
