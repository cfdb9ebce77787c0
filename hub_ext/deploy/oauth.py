"""OAuth / OIDC login: ``DSPLATFORM_AUTH=oauth`` selects OAuthenticator's GenericOAuthenticator.

Everything comes from ``OAUTH_*`` environment variables (the Helm chart sets them from its
``auth.oauth`` values and a Secret). The identity provider's groups claim becomes the user's
hub groups at every login (``manage_groups``), so the IdP decides which profiles, quotas and
datasets a user gets.

Variables (required ones marked *):

=========================  ==============================================================
``OAUTH_CLIENT_ID`` *      the client registered with the identity provider
``OAUTH_CLIENT_SECRET`` *  its secret
``OAUTH_CALLBACK_URL`` *   ``https://HUB/hub/oauth_callback`` as registered with the IdP
``OAUTH_ISSUER``           OIDC issuer: endpoints read from its
                           ``/.well-known/openid-configuration`` at start-up; or else *
``OAUTH_AUTHORIZE_URL``,   the three endpoints, given explicitly
``OAUTH_TOKEN_URL``,
``OAUTH_USERDATA_URL``
``OAUTH_ALLOWED_GROUPS`` * comma-separated groups whose members may log in (or
                           ``OAUTH_ALLOW_ALL=true``: every user the IdP authenticates)
``OAUTH_ADMIN_GROUPS``     groups whose members are hub admins
``OAUTH_ADMIN_USERS``      user names that are hub admins
``OAUTH_SCOPES``           default ``openid profile email`` (spaces or commas)
``OAUTH_USERNAME_CLAIM``   default ``preferred_username``
``OAUTH_CLAIM_GROUPS_KEY`` the userinfo claim with the groups, default ``groups``; a dotted
                           path reaches into nested claims (``realm_access.roles``)
``OAUTH_LOGIN_SERVICE``    the login button's text, default ``single sign-on``
``OAUTH_TLS_VERIFY``       ``false`` to accept an IdP's self-signed certificate
=========================  ==============================================================
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from traitlets.config import Config

from hub_ext.errors import ConfigError

REQUIRED = ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_CALLBACK_URL")
ENDPOINTS = {
    "OAUTH_AUTHORIZE_URL": ("authorize_url", "authorization_endpoint"),
    "OAUTH_TOKEN_URL": ("token_url", "token_endpoint"),
    "OAUTH_USERDATA_URL": ("userdata_url", "userinfo_endpoint"),
}
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

Fetch = Callable[[str], Any]


def fetch_json(url: str, timeout: float = 10) -> Any:
    """GET ``url`` and parse its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def split_list(text: str) -> list[str]:
    """``"a, b c"`` -> ``["a", "b", "c"]`` (commas or spaces)."""
    return [item for item in text.replace(",", " ").split() if item]


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def http_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={value!r}: expected an http(s) URL")
    return value


def discover(issuer: str, fetch: Fetch = fetch_json) -> dict[str, str]:
    """The endpoints of an OIDC issuer from its discovery document.

    Raises:
        ConfigError: the document cannot be read, lacks an endpoint, or names another issuer.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        document = fetch(url)
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise ConfigError(f"OAUTH_ISSUER: cannot read {url}: {e}") from None
    if not isinstance(document, Mapping):
        raise ConfigError(f"OAUTH_ISSUER: {url} is not an OpenID discovery document")
    if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ConfigError(
            f"OAUTH_ISSUER: {url} names issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    endpoints = {}
    for env_name, (_trait, key) in ENDPOINTS.items():
        value = document.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"OAUTH_ISSUER: {url} has no {key}")
        endpoints[env_name] = http_url(f"{key} of OAUTH_ISSUER", value)
    return endpoints


def oauth_settings(env: Mapping[str, str], fetch: Fetch = fetch_json) -> dict[str, Any]:
    """GenericOAuthenticator trait values from ``OAUTH_*`` variables.

    Pure except for the OIDC discovery request (``fetch``) when ``OAUTH_ISSUER`` is set.

    Raises:
        ConfigError: naming the missing or invalid variable.
    """
    for name in REQUIRED:
        if not env.get(name, "").strip():
            raise ConfigError(f"{name} is not set (DSPLATFORM_AUTH=oauth needs it)")
    issuer = env.get("OAUTH_ISSUER", "").strip()
    explicit = {name: env.get(name, "").strip() for name in ENDPOINTS}
    if issuer:
        endpoints = discover(http_url("OAUTH_ISSUER", issuer), fetch)
        endpoints.update({k: http_url(k, v) for k, v in explicit.items() if v})  # overrides
    else:
        for name, value in explicit.items():
            if not value:
                raise ConfigError(
                    f"{name} is not set (DSPLATFORM_AUTH=oauth needs OAUTH_ISSUER or all of "
                    f"{', '.join(ENDPOINTS)})"
                )
        endpoints = {k: http_url(k, v) for k, v in explicit.items()}

    allowed_groups = set(split_list(env.get("OAUTH_ALLOWED_GROUPS", "")))
    allow_all = flag(env, "OAUTH_ALLOW_ALL", False)
    if not allowed_groups and not allow_all:
        raise ConfigError(
            "OAUTH_ALLOWED_GROUPS is not set (name the groups whose members may log in, "
            "or set OAUTH_ALLOW_ALL=true to let in everyone the identity provider accepts)"
        )
    claim = env.get("OAUTH_CLAIM_GROUPS_KEY", "").strip() or "groups"
    scopes = split_list(env.get("OAUTH_SCOPES", "")) or ["openid", "profile", "email"]
    settings: dict[str, Any] = {
        "client_id": env["OAUTH_CLIENT_ID"].strip(),
        "client_secret": env["OAUTH_CLIENT_SECRET"].strip(),
        "oauth_callback_url": http_url("OAUTH_CALLBACK_URL", env["OAUTH_CALLBACK_URL"].strip()),
        **{ENDPOINTS[name][0]: url for name, url in endpoints.items()},
        "scope": scopes,
        "username_claim": env.get("OAUTH_USERNAME_CLAIM", "").strip() or "preferred_username",
        "manage_groups": True,
        # what GenericOAuthenticator.claim_groups_key (deprecated in OAuthenticator 17) does
        "auth_state_groups_key": f"oauth_user.{claim}",
        "allowed_groups": allowed_groups,
        "admin_groups": set(split_list(env.get("OAUTH_ADMIN_GROUPS", ""))),
        "allow_all": allow_all,
        "login_service": env.get("OAUTH_LOGIN_SERVICE", "").strip() or "single sign-on",
        "validate_server_cert": flag(env, "OAUTH_TLS_VERIFY", True),
    }
    return settings


def apply_oauth(c: Config, settings: Mapping[str, Any], admin_users: set[str]) -> None:
    """Switch ``c`` from the local shared password to GenericOAuthenticator."""
    c.JupyterHub.authenticator_class = "generic-oauth"
    for name, value in settings.items():
        setattr(c.GenericOAuthenticator, name, value)
    # the local default lets everyone in and makes "admin" an admin: not with an IdP
    c.Authenticator.allow_all = bool(settings.get("allow_all", False))
    c.Authenticator.admin_users = set(admin_users)
    # groups come from the identity provider; JupyterHub refuses load_groups alongside
    c.JupyterHub.load_groups = {}


def configure_auth(c: Config, env: Mapping[str, str], fetch: Fetch = fetch_json) -> None:
    """Apply ``DSPLATFORM_AUTH``: ``oauth`` configures GenericOAuthenticator from ``OAUTH_*``;
    ``shared-password`` (the default) leaves the embedded default. Anything wrong stops the
    hub at start-up naming the variable."""
    from hub_ext.errors import stop_invalid

    mode = env.get("DSPLATFORM_AUTH", "").strip() or "shared-password"
    try:
        if mode == "shared-password":
            return
        if mode != "oauth":
            raise ConfigError(f"DSPLATFORM_AUTH={mode!r}: expected oauth or shared-password")
        settings = oauth_settings(env, fetch)
    except ConfigError as e:
        stop_invalid(e)
    apply_oauth(c, settings, set(split_list(env.get("OAUTH_ADMIN_USERS", ""))))
