"""OAuth login end to end: a real hub with GenericOAuthenticator against a real OIDC provider.

``oidc-provider-mock`` runs in a subprocess with preset users and ``groups`` claims; the
hub runs the embedded config with ``DSPLATFORM_AUTH=oauth`` and ``OAUTH_ISSUER`` (OIDC
discovery). Logins follow the browser's redirects with plain HTTP requests. The groups in
the token become hub groups, and they decide which profiles a user may start and which
quotas apply; a user outside the allowed groups is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hub import BARE_HUB, HubProcess, assert_refuses_to_start
from .oidc_provider import OIDCProvider, browser_login

pytestmark = pytest.mark.hub

POLICY = (
    BARE_HUB
    + """
c.ProfileSpawner.profiles = [
    {"slug": "cpu-small", "toolchain": "scipy", "cpu": {"default": 0.5, "max": 1},
     "memory": {"default": "512M", "max": "1G"}, "groups": ["*"]},
    {"slug": "gpu", "toolchain": "scipy", "gpu_type": "nvidia-a100",
     "gpu": {"default": 1, "min": 1, "max": 2}, "cpu": 0.5, "memory": "512M",
     "groups": ["ml-research"]},
]
c.QuotaPolicy.default = {"servers": 1, "cpu": 1, "memory": "1G", "gpus": 0,
                         "gpu_hours_per_week": 0}
c.QuotaPolicy.groups = {"ml-research": {"servers": 2, "cpu": 4, "memory": "4G", "gpus": 2,
                                        "gpu_hours_per_week": 10}}
c.QuotaPolicy.pools = {"nvidia-a100": 2}
c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1"]}
"""
)

USERS = {
    "alice": {"preferred_username": "alice", "groups": ["ml-research"]},
    "bob": {"preferred_username": "bob", "groups": ["analysts"]},
    "eve": {"preferred_username": "eve", "groups": ["contractors"]},
    "ada-sub-0001": {"preferred_username": "ada", "groups": ["analysts", "platform-admins"]},
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    idp = OIDCProvider(tmp_path_factory.mktemp("oidc"), USERS).start()
    try:
        yield idp
    finally:
        idp.stop()


def oauth_env(hub: HubProcess, provider: OIDCProvider) -> dict[str, str]:
    return {
        "DSPLATFORM_AUTH": "oauth",
        "OAUTH_CLIENT_ID": "dsplatform-hub",
        "OAUTH_CLIENT_SECRET": "not-so-secret",
        "OAUTH_CALLBACK_URL": f"{hub.url}/hub/oauth_callback",
        "OAUTH_ISSUER": provider.issuer,
        "OAUTH_ALLOWED_GROUPS": "ml-research,analysts",
        "OAUTH_ADMIN_GROUPS": "platform-admins",
    }


@pytest.fixture(scope="module")
def oauth_hub(
    tmp_path_factory: pytest.TempPathFactory, provider: OIDCProvider
) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("oauth-hub"), POLICY)
    hub.env.update(oauth_env(hub, provider))
    hub.start()
    try:
        yield hub
    finally:
        hub.shutdown()


def login(hub: HubProcess, sub: str) -> int:
    _, answer, visited = browser_login(hub.url, sub)
    assert visited[0].startswith(f"{hub.env['OAUTH_ISSUER']}/oauth2/authorize?")
    assert visited[1].startswith(f"{hub.url}/hub/oauth_callback?code=")
    return answer.status_code


def hub_user(hub: HubProcess, name: str) -> dict:
    response = hub.api("GET", f"/users/{name}")
    response.raise_for_status()
    return response.json()


def test_groups_from_the_token_become_hub_groups_and_decide_profiles_and_quotas(
    oauth_hub: HubProcess,
) -> None:
    hub = oauth_hub
    assert login(hub, "alice") == 302
    assert login(hub, "bob") == 302
    alice, bob = hub_user(hub, "alice"), hub_user(hub, "bob")
    assert alice["groups"] == ["ml-research"] and not alice["admin"]
    assert bob["groups"] == ["analysts"] and not bob["admin"]

    usage = hub.usage("alice")
    assert usage["profiles"] == ["cpu-small", "gpu"]
    assert usage["limits"]["gpus"] == 2 and usage["limits"]["servers"] == 2
    usage = hub.usage("bob")
    assert usage["profiles"] == ["cpu-small"]
    assert usage["limits"]["gpus"] == 0 and usage["limits"]["servers"] == 1

    refused = hub.spawn("bob", options={"profile": "gpu"})
    assert refused.status_code == 403, refused.text
    assert "gpu" in refused.json()["message"]

    started = hub.spawn("alice", options={"profile": "gpu", "gpus": 1})
    assert started.status_code in (201, 202), started.text
    try:
        model = hub.wait_ready("alice", timeout=90)
        assert model["user_options"]["profile"] == "gpu"
        assert hub.usage("alice")["usage"]["gpus"] == 1
    finally:
        hub.stop_server("alice")


def test_group_changes_at_the_provider_apply_at_the_next_login(
    oauth_hub: HubProcess, provider: OIDCProvider
) -> None:
    hub = oauth_hub
    provider.set_claims("bob", {"preferred_username": "bob", "groups": ["analysts", "ml-research"]})
    try:
        assert login(hub, "bob") == 302
        assert sorted(hub_user(hub, "bob")["groups"]) == ["analysts", "ml-research"]
        assert hub.usage("bob")["profiles"] == ["cpu-small", "gpu"]
        assert hub.usage("bob")["limits"]["gpus"] == 2
    finally:
        provider.set_claims("bob", USERS["bob"])
    assert login(hub, "bob") == 302
    assert hub_user(hub, "bob")["groups"] == ["analysts"]
    assert hub.usage("bob")["profiles"] == ["cpu-small"]


def test_a_user_outside_the_allowed_groups_is_refused(oauth_hub: HubProcess) -> None:
    assert login(oauth_hub, "eve") == 403
    assert oauth_hub.api("GET", "/users/eve").status_code == 404


def test_admin_groups_make_admins_and_the_username_claim_names_the_user(
    oauth_hub: HubProcess,
) -> None:
    assert login(oauth_hub, "ada-sub-0001") == 302
    ada = hub_user(oauth_hub, "ada")
    assert ada["admin"] is True
    assert sorted(ada["groups"]) == ["analysts", "platform-admins"]


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [  # the other variables' messages: tests/test_oauth_config.py (no hub needed)
        ("OAUTH_CLIENT_ID", {}, "OAUTH_CLIENT_ID is not set"),
        (None, {"OAUTH_ISSUER": "http://127.0.0.1:9"}, "OAUTH_ISSUER: cannot read"),
    ],
)
def test_a_missing_or_wrong_variable_stops_the_hub_naming_it(
    tmp_path: Path,
    provider: OIDCProvider,
    oauth_hub: HubProcess,
    drop: str | None,
    extra: dict,
    message: str,
) -> None:
    hub = HubProcess(tmp_path, POLICY)
    env = {**os.environ, **oauth_env(hub, provider), **extra}
    if drop:
        env.pop(drop)
    env["DSPLATFORM_STATE_DIR"] = str(tmp_path / "state")
    # the demo registry the running hub built (building it again takes seconds)
    shutil.copytree(oauth_hub.state / "platform" / "registries", tmp_path / "state" / "registries")
    env["DSPLATFORM_EXTRA_CONFIG"] = str(hub.write_config())
    assert_refuses_to_start(tmp_path, env, message, timeout=120)
