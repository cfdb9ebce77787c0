"""``scripts/start`` as a user runs it: it says what it does, prints one banner once the hub
answers (URL, password, demo users), and Ctrl-C stops the hub and every service it started,
without tracebacks.

The script runs in a session of its own with SIGINT at its default (as from a terminal);
Ctrl-C is SIGINT to that foreground process group.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .hub import REPO, free_port, traversable

pytestmark = pytest.mark.hub


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:  # a zombie is gone for the user
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue
        except OSError:
            continue
        alive.add(pid)
    return alive


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_start_prints_one_banner_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "state").mkdir()
    traversable(tmp_path / "state")  # sandbox accounts pass through to their workspaces
    env = {
        **os.environ,
        "DSPLATFORM_STATE_DIR": str(tmp_path / "state"),
        "DSPLATFORM_PORT": str(port),
        "DSPLATFORM_MLFLOW_PORT": str(free_port()),
        "DSPLATFORM_CATALOG_PORT": str(free_port()),
        "DSPLATFORM_DASK_PORT": str(free_port()),
        "DSPLATFORM_DASK_SCHEDULER_PORT": str(free_port()),
        "DSPLATFORM_DASK_API_PORT": str(free_port()),
    }
    log = tmp_path / "start.log"
    family: set[int] = set()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "scripts/start"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own terminal session, as a user's shell gives it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 600  # a first bootstrap installs for minutes
        while "dsplatform is ready" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        text = log.read_text()
        assert "dsplatform is ready" in text, text[-3000:]
        assert text.startswith("dsplatform: checking what is installed")
        assert "dsplatform: starting the hub, MLflow and the catalog service" in text
        password = (tmp_path / "state" / "user_password").read_text().strip()
        banner = text[text.index("dsplatform is ready") :]
        assert f"http://127.0.0.1:{port}/" in banner and f"password: {password}" in banner
        for user in ("alice", "paul", "rita", "admin"):
            assert re.search(rf"^\s+{user}\s", banner, re.M), banner
        assert text.count("dsplatform is ready") == 1
        assert "log in with any user name" not in text  # the config's banner is replaced
        time.sleep(3)  # the banner waited for the hub, MLflow and the catalog; the rest settle
        family = _descendants(proc.pid)
        assert len(family) >= 4, family  # the hub, the proxy, MLflow, the catalog, the culler

        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)
        while _alive(family) and time.monotonic() - started < 30:
            time.sleep(0.2)
        stopped = time.monotonic() - started
        assert not _alive(family), (family, log.read_text()[-3000:])
        assert stopped < 30, stopped
        text = log.read_text()
        assert text.rstrip().endswith("dsplatform: stopped"), text[-2000:]
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _alive(family | _descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)
