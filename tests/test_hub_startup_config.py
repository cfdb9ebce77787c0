"""Invalid admin configuration stops the real hub at start-up, naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .hub import REPO

pytestmark = pytest.mark.hub

CASES = [
    (
        "c.ProfileSpawner.profiles = [{'slug': 'cpu-small', 'cpu': {'default': 1, 'min': 4, 'max': 2}}]",
        "c.ProfileSpawner.profiles[0] ('cpu-small'): key 'cpu': min 4 > max 2",
    ),
    (
        "c.ProfileSpawner.profiles = [{'slug': 'x', 'toolchain': 'nope'}]",
        "c.ProfileSpawner.profiles[0] ('x'): key 'toolchain': unknown toolchain 'nope'",
    ),
    (
        "c.ProfileSpawner.profiles = [{'slug': 'a'}, {'slug': 'a'}]",
        "c.ProfileSpawner.profiles[1] ('a'): key 'slug': duplicate slug 'a'",
    ),
    (
        "c.ProfileSpawner.profiles = [{'slug': 'a', 'memory': {'default': '8G', 'max': '4G'}}]",
        "c.ProfileSpawner.profiles[0] ('a'): key 'memory': default '8G' outside range",
    ),
    (
        "c.ProfileSpawner.profiles = [{'slug': 'a', 'gpus': 2}]",
        "c.ProfileSpawner.profiles[0] ('a'): key 'gpus': unknown key",
    ),
    (
        "c.QuotaPolicy.groups = {'ml': {'gpu': 2}}",
        "c.QuotaPolicy.groups['ml']: unknown key 'gpu'",
    ),
]


@pytest.mark.parametrize(("config", "message"), CASES)
def test_invalid_config_refuses_to_start(tmp_path: Path, config: str, message: str) -> None:
    extra = tmp_path / "site.py"
    extra.write_text(config + "\n")
    env = {
        **os.environ,
        "DSPLATFORM_STATE_DIR": str(tmp_path / "state"),
        "DSPLATFORM_EXTRA_CONFIG": str(extra),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"dsplatform: invalid configuration: {message}" in proc.stderr
    assert not (tmp_path / "state" / "jupyterhub.sqlite").exists()
