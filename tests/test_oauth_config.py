"""OAUTH_* variables -> GenericOAuthenticator settings (pure; discovery through a given fetch).

The real login flow against a real OIDC provider is in tests/test_hub_oauth.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from oauthenticator.generic import GenericOAuthenticator
from traitlets.config import Config

from hub_ext.deploy.oauth import apply_oauth, discover, oauth_settings, split_list
from hub_ext.errors import ConfigError

ISSUER = "https://login.example.org/realms/data"
DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "userinfo_endpoint": f"{ISSUER}/userinfo",
}
BASE = {
    "OAUTH_CLIENT_ID": "hub",
    "OAUTH_CLIENT_SECRET": "secret",
    "OAUTH_CALLBACK_URL": "https://hub.example.org/hub/oauth_callback",
    "OAUTH_AUTHORIZE_URL": "https://idp.example.org/authorize",
    "OAUTH_TOKEN_URL": "https://idp.example.org/token",
    "OAUTH_USERDATA_URL": "https://idp.example.org/userinfo",
    "OAUTH_ALLOWED_GROUPS": "ml-research, analysts",
}


def fetch_from(documents: dict[str, Any]):
    def fetch(url: str) -> Any:
        if url not in documents:
            raise OSError(f"connection refused: {url}")
        return documents[url]

    return fetch


WELL_KNOWN = f"{ISSUER}/.well-known/openid-configuration"
NO_NETWORK = fetch_from({})


def test_explicit_endpoints_and_defaults() -> None:
    settings = oauth_settings(BASE, NO_NETWORK)
    assert settings == {
        "client_id": "hub",
        "client_secret": "secret",
        "oauth_callback_url": "https://hub.example.org/hub/oauth_callback",
        "authorize_url": "https://idp.example.org/authorize",
        "token_url": "https://idp.example.org/token",
        "userdata_url": "https://idp.example.org/userinfo",
        "scope": ["openid", "profile", "email"],
        "username_claim": "preferred_username",
        "manage_groups": True,
        "auth_state_groups_key": "oauth_user.groups",
        "allowed_groups": {"ml-research", "analysts"},
        "admin_groups": set(),
        "allow_all": False,
        "login_service": "single sign-on",
        "validate_server_cert": True,
    }


def test_issuer_discovery_and_explicit_overrides() -> None:
    env = {k: v for k, v in BASE.items() if k not in ("OAUTH_AUTHORIZE_URL", "OAUTH_USERDATA_URL")}
    env["OAUTH_ISSUER"] = ISSUER + "/"
    settings = oauth_settings(env, fetch_from({WELL_KNOWN: DISCOVERY}))
    assert settings["authorize_url"] == f"{ISSUER}/auth"
    assert settings["userdata_url"] == f"{ISSUER}/userinfo"
    assert settings["token_url"] == "https://idp.example.org/token"  # explicit wins


def test_optional_variables() -> None:
    env = {
        **BASE,
        "OAUTH_SCOPES": "openid,groups  email",
        "OAUTH_USERNAME_CLAIM": "email",
        "OAUTH_CLAIM_GROUPS_KEY": "realm_access.roles",
        "OAUTH_ADMIN_GROUPS": "platform-admins",
        "OAUTH_ALLOWED_GROUPS": "",
        "OAUTH_ALLOW_ALL": "True",
        "OAUTH_LOGIN_SERVICE": "Example SSO",
        "OAUTH_TLS_VERIFY": "no",
    }
    settings = oauth_settings(env, NO_NETWORK)
    assert settings["scope"] == ["openid", "groups", "email"]
    assert settings["username_claim"] == "email"
    assert settings["auth_state_groups_key"] == "oauth_user.realm_access.roles"
    assert settings["admin_groups"] == {"platform-admins"}
    assert settings["allowed_groups"] == set() and settings["allow_all"] is True
    assert settings["login_service"] == "Example SSO"
    assert settings["validate_server_cert"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"OAUTH_CLIENT_ID": None}, "OAUTH_CLIENT_ID is not set"),
        ({"OAUTH_CLIENT_SECRET": "  "}, "OAUTH_CLIENT_SECRET is not set"),
        ({"OAUTH_CALLBACK_URL": None}, "OAUTH_CALLBACK_URL is not set"),
        ({"OAUTH_TOKEN_URL": None}, "OAUTH_TOKEN_URL is not set (DSPLATFORM_AUTH=oauth needs"),
        ({"OAUTH_ALLOWED_GROUPS": None}, "OAUTH_ALLOWED_GROUPS is not set"),
        ({"OAUTH_ALLOW_ALL": "maybe"}, "OAUTH_ALLOW_ALL='maybe': expected true or false"),
        ({"OAUTH_CALLBACK_URL": "hub.example.org/cb"}, "OAUTH_CALLBACK_URL='hub.example.org/cb'"),
        (
            {"OAUTH_USERDATA_URL": "ftp://x"},
            "OAUTH_USERDATA_URL='ftp://x': expected an http(s) URL",
        ),
        ({"OAUTH_ISSUER": "https://down.example.org"}, "OAUTH_ISSUER: cannot read"),
        ({"OAUTH_ISSUER": "login.example.org"}, "OAUTH_ISSUER='login.example.org'"),
    ],
)
def test_missing_or_invalid_variables_are_named(change: dict, message: str) -> None:
    env = {**BASE, **{k: v for k, v in change.items() if v is not None}}
    for name in [k for k, v in change.items() if v is None]:
        env.pop(name)
    with pytest.raises(ConfigError) as raised:
        oauth_settings(env, NO_NETWORK)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "is not an OpenID discovery document"),
        ({**DISCOVERY, "issuer": "https://evil.example.org"}, "names issuer 'https://evil"),
        ({k: v for k, v in DISCOVERY.items() if k != "token_endpoint"}, "has no token_endpoint"),
        ({**DISCOVERY, "userinfo_endpoint": "javascript:x"}, "expected an http(s) URL"),
    ],
)
def test_bad_discovery_documents_are_refused(document: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        discover(ISSUER, fetch_from({WELL_KNOWN: document}))
    assert str(raised.value).startswith("OAUTH_ISSUER") or "OAUTH_ISSUER" in str(raised.value)
    assert message in str(raised.value)


def test_apply_oauth_replaces_the_local_defaults() -> None:
    c = Config()  # what the embedded local default sets before
    c.JupyterHub.authenticator_class = "shared-password"
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = {"admin"}
    c.JupyterHub.load_groups = {"ml-research": {"users": ["alice"]}}
    apply_oauth(c, oauth_settings(BASE, NO_NETWORK), {"ada"})
    assert c.JupyterHub.authenticator_class == "generic-oauth"
    assert c.JupyterHub.load_groups == {}
    authenticator = GenericOAuthenticator(config=c)
    assert authenticator.allow_all is False
    assert authenticator.admin_users == {"ada"}
    assert authenticator.manage_groups is True
    assert authenticator.allowed_groups == {"ml-research", "analysts"}
    assert authenticator.auth_state_groups_key == "oauth_user.groups"
    assert authenticator.token_url == "https://idp.example.org/token"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", []), ("a", ["a"]), ("a,b", ["a", "b"]), (" a , b  c ", ["a", "b", "c"]), (",,", [])],
)
def test_split_list(text: str, expected: list[str]) -> None:
    assert split_list(text) == expected


def test_configure_auth_modes(capsys) -> None:
    from hub_ext.deploy.oauth import configure_auth

    c = Config()
    configure_auth(c, {})  # the local default: nothing changes
    configure_auth(c, {"DSPLATFORM_AUTH": "shared-password"})
    assert c == Config()
    configure_auth(c, {"DSPLATFORM_AUTH": "oauth", **BASE}, NO_NETWORK)
    assert c.JupyterHub.authenticator_class == "generic-oauth"
    for env in ({"DSPLATFORM_AUTH": "ldap"}, {"DSPLATFORM_AUTH": "oauth"}):
        with pytest.raises(SystemExit) as exited:
            configure_auth(Config(), env, NO_NETWORK)
        assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "dsplatform: invalid configuration: DSPLATFORM_AUTH='ldap'" in err
    assert "dsplatform: invalid configuration: OAUTH_CLIENT_ID is not set" in err
