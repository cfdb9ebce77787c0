"""Invalid admin configuration stops the real hub at start-up, naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .hub import assert_refuses_to_start, traversable

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
        "c.DataConnections.connections = {'lake': {'type': 's3', 'bucket': 'raw', "
        "'groups': ['ml'], 'credentials': {'env': 'LAKE'}, 'secret': 'x'}}",
        "c.DataConnections.connections['lake']: unknown key 'secret'",
    ),
    (
        "c.DataConnections.connections = {'dwh': {'type': 'sql', 'url_env': 'NOT_SET_ANYWHERE', "
        "'groups': ['ml']}}",
        "c.DataConnections.connections['dwh']: the hub's environment lacks NOT_SET_ANYWHERE",
    ),
    (
        "c.PlatformMonitoring.sample_rate = 1.5",
        "c.PlatformMonitoring.sample_rate: 1.5 is not between 0 and 1",
    ),
    (
        "c.DaskClusters.scheduler_port = c.DaskClusters.port = 10200",
        "c.DaskClusters: port, scheduler_port and api_port must differ",
    ),
    (
        "c.QuotaPolicy.groups = {'ml': {'gpu': 2}}",
        "c.QuotaPolicy.groups['ml']: unknown key 'gpu'",
    ),
]


@pytest.mark.parametrize(("config", "message"), CASES)
def test_invalid_config_refuses_to_start(tmp_path: Path, config: str, message: str) -> None:
    traversable(tmp_path)  # the state dir's parents: checked (local mode) before the services
    extra = tmp_path / "site.py"
    extra.write_text(config + "\n")
    env = {
        **os.environ,
        "DSPLATFORM_STATE_DIR": str(tmp_path / "state"),
        "DSPLATFORM_EXTRA_CONFIG": str(extra),
    }
    assert_refuses_to_start(tmp_path, env, message, timeout=60)
