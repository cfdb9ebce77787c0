"""The pure parts of Dask clusters: the cluster options a user gets from their profiles, the
overrides a choice becomes, the start-up checks of ``c.DaskClusters``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import PublicException
from traitlets.config import Config

from hub_ext.dask.backend import options_for
from hub_ext.dask.settings import (
    KUBE_BACKEND,
    DaskClusters,
    backend_for,
    check,
    gateway_command,
    sandbox_env,
)
from hub_ext.errors import ConfigError

PROFILES = {
    "profiles": [
        {"slug": "cpu-small", "cpu": {"default": "1", "min": "0.5", "max": "2"},
         "memory": {"default": "1G", "min": "0", "max": "2G"}, "gpus": None},
        {"slug": "gpu-a100", "cpu": {"default": "1", "min": "1", "max": "4"},
         "memory": {"default": "1G", "min": "0", "max": "8G"},
         "gpus": {"default": "1", "min": "1", "max": "4"}},
    ],
    "default": "cpu-small",
    "identity": {"account": "dsp-alice", "workspace": "/srv/alice", "max_tasks": 512,
                 "python": {"gpu-a100": "/opt/torch/bin/python"}},
}  # fmt: skip


def test_the_options_start_from_the_default_profile_and_span_all_of_them() -> None:
    options = options_for(PROFILES)
    fields = {f.field: f for f in options.fields}
    assert list(fields["profile"].options) == ["cpu-small", "gpu-a100"]
    assert fields["profile"].default == "cpu-small"
    assert (fields["worker_cores"].default, fields["worker_cores"].min) == (1.0, 0.5)
    assert fields["worker_cores"].max == 4.0 and fields["worker_gpus"].max == 4
    assert fields["worker_memory"].default == "1G"


def test_a_choice_becomes_the_hubs_options_and_the_workers_settings() -> None:
    options = options_for(PROFILES)
    chosen = options.parse_options(
        {"profile": "gpu-a100", "worker_cores": 2, "worker_memory": "2G", "worker_gpus": 1}
    )
    user = SimpleNamespace(name="alice", groups=[], admin=False)
    overrides = options.get_configuration(chosen, user)
    assert overrides["hub_options"] == {"profile": "gpu-a100", "cpu": 2.0, "memory": "2G",
                                        "gpus": 1}  # fmt: skip
    assert overrides["worker_memory"] == 2 * 2**30 and overrides["worker_threads"] == 2
    assert overrides["worker_cmd"][0] == "/opt/torch/bin/python"  # the profile's toolchain
    assert overrides["account"] == "dsp-alice" and overrides["max_tasks"] == 512
    with pytest.raises(ValueError, match="worker_memory"):
        options.get_configuration(options.parse_options({"worker_memory": "lots"}), user)


def test_a_user_without_profiles_gets_a_clear_refusal() -> None:
    with pytest.raises(PublicException, match="No profile"):
        options_for({"profiles": [], "default": None})


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"port": 0}, "c.DaskClusters.port: 0 is not a TCP port"),
        ({"api_port": 10102}, "port, scheduler_port and api_port must differ"),
        ({"max_workers": 0}, "c.DaskClusters.max_workers: 0; at least 1"),
        ({"heartbeat_period": 0}, "heartbeat_period"),
        ({"scheduler_memory": "lots"}, "c.DaskClusters.scheduler_memory"),
        ({"scheduler_cpu": 0}, "scheduler_cpu and scheduler_memory must be > 0"),
    ],
)
def test_invalid_settings_name_the_key(setting: dict[str, object], message: str) -> None:
    c = Config()
    for key, value in setting.items():
        setattr(c.DaskClusters, key, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check(c)


def test_the_gateway_and_the_sandboxes_agree_on_addresses() -> None:
    s = DaskClusters(config=Config({"DaskClusters": {"port": 9100, "scheduler_port": 9101}}))
    env = sandbox_env(s)
    assert env["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:9100/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://127.0.0.1:9101"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    from pathlib import Path

    command = gateway_command(s, Path("/srv/dask"))
    assert "--Proxy.address=127.0.0.1:9100" in command
    assert "--Proxy.tcp_address=127.0.0.1:9101" in command
    assert "--Proxy.prefix=/services/dask-gateway" in command


def test_the_backend_follows_the_spawner_and_others_are_refused() -> None:
    from jupyterhub.spawner import LocalProcessSpawner

    from hub_ext.spawners.kube import ProfileKubeSpawner
    from hub_ext.spawners.local import LocalProfileSpawner

    assert backend_for(LocalProfileSpawner) == "hub_ext.dask.backend.PlatformBackend"
    assert backend_for(ProfileKubeSpawner) == "hub_ext.dask.kube_backend.PlatformKubeBackend"
    c = Config()
    c.DaskClusters.enabled = True
    check(c, LocalProfileSpawner)
    check(c, ProfileKubeSpawner)
    with pytest.raises(
        ConfigError, match=r"c\.DaskClusters\.enabled: .* not with LocalProcessSpawner"
    ):
        check(c, LocalProcessSpawner)


def test_on_kubernetes_the_gateway_binds_everywhere_and_pods_report_to_the_service() -> None:
    from pathlib import Path

    c = Config()
    c.DaskClusters.host, c.DaskClusters.bind_ip = "dsplatform-hub", "0.0.0.0"
    s = DaskClusters(config=c)
    command = gateway_command(s, Path("/srv/dask"), KUBE_BACKEND)
    assert f"--DaskGateway.backend_class={KUBE_BACKEND}" in command
    assert "--Proxy.address=0.0.0.0:10102" in command
    assert (
        "--PlatformBackend.api_url=http://dsplatform-hub:10102/services/dask-gateway/api" in command
    )
    assert sandbox_env(s)["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://dsplatform-hub:10103"
    c.DaskClusters.bind_ip = "0.0.0.0:1"
    with pytest.raises(ConfigError, match=r"c\.DaskClusters\.bind_ip: '0\.0\.0\.0:1'"):
        check(c)
