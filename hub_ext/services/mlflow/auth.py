"""MLflow behind hub identity: the authorization function and app of the platform's MLflow.

The MLflow server runs MLflow's own auth app (``mlflow[auth]``: per-experiment and
per-registered-model permissions, the creator gets MANAGE, everyone else
``default_permission``, admins everything) with this module plugged in:

* :func:`authenticate_request` (``authorization_function``): the credential is a **hub
  token**, sent by MLflow's client as ``Authorization: Bearer`` from ``MLFLOW_TRACKING_TOKEN``
  (sandboxes get their server token there). The hub says whose it is (``GET /hub/api/user``,
  cached a minute); the MLflow user of that name is created on first sight and kept an admin
  exactly when the hub user is one. A trusted platform service (the catalog) acts as itself
  (an MLflow admin) or, for its MLflow UI route, as the logged-in hub user it names in
  ``X-Dsplatform-User``. Basic auth stays for MLflow's own admin account.
* :func:`create_app` (``mlflow server --app-name dsplatform``): MLflow's auth app, plus
  - protected aliases (``c.ModelGovernance.protected_aliases``): no direct call sets or
    deletes them, nor deletes the version or model they point to; only the catalog's
    promotion flow moves them;
  - group sharing (``c.PlatformMLflow.sharing_groups``): an MLflow role per such hub group;
    its members may edit (not delete) each other's experiments and models.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from server_ext.registry_names import is_version

IMPERSONATE = "X-Dsplatform-User"
CACHE_SECONDS = 60.0
SERVICE_PREFIX = "service:"
ROLE_PREFIX = "hub-group:"
WORKSPACE = "default"


@dataclass(frozen=True)
class HubIdentity:
    """Who a hub token belongs to."""

    kind: str  # "user" or "service"
    name: str
    admin: bool = False
    groups: tuple[str, ...] = ()


class HubClient:
    """The hub API as this MLflow server sees it (its own service token for lookups)."""

    def __init__(self, api_url: str, token: str, timeout: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._cache: dict[str, tuple[float, HubIdentity | None]] = {}
        self._lock = threading.Lock()

    def _get(self, path: str, token: str) -> dict[str, Any] | None:
        request = urllib.request.Request(
            f"{self.api_url}{path}", headers={"Authorization": f"token {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: dict[str, Any] = json.load(response)
                return data
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 404):
                return None
            raise

    def identity(self, token: str) -> HubIdentity | None:
        """The token's owner, or None for an unknown or expired token (cached a minute)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        owner = self._get("/user", token)
        identity = None
        if owner is not None and owner.get("kind") == "service":
            identity = HubIdentity("service", str(owner["name"]))
        elif owner is not None and owner.get("name"):
            name = str(owner["name"])
            model = self._get(f"/users/{urllib.parse.quote(name)}", self.token) or {}
            identity = HubIdentity(
                "user", name, bool(model.get("admin")), tuple(sorted(model.get("groups", [])))
            )
        with self._lock:
            self._cache[key] = (time.monotonic() + CACHE_SECONDS, identity)
        return identity

    def user(self, name: str) -> HubIdentity | None:
        """A hub user by name (for a trusted service acting as them)."""
        model = self._get(f"/users/{urllib.parse.quote(name)}", self.token)
        if model is None:
            return None
        return HubIdentity(
            "user", name, bool(model.get("admin")), tuple(sorted(model.get("groups", [])))
        )


@dataclass(frozen=True)
class Settings:
    """The platform's settings, handed to the MLflow server in its environment."""

    trusted_services: frozenset[str]
    protected_aliases: frozenset[str]
    sharing_groups: frozenset[str]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        settings = json.loads(env.get("DSPLATFORM_MLFLOW_AUTH", "{}"))
        return cls(
            trusted_services=frozenset(settings.get("trusted_services", [])),
            protected_aliases=frozenset(settings.get("protected_aliases", [])),
            sharing_groups=frozenset(settings.get("sharing_groups", [])),
        )


_hub: HubClient | None = None
_settings: Settings | None = None
_known: dict[str, tuple[bool, tuple[str, ...]]] = {}  # MLflow users already synced


def hub() -> HubClient:
    global _hub
    if _hub is None:
        _hub = HubClient(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    return _hub


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def mlflow_username(identity: HubIdentity) -> str:
    return SERVICE_PREFIX + identity.name if identity.kind == "service" else identity.name


def sync_user(username: str, admin: bool, groups: tuple[str, ...]) -> None:
    """The MLflow user for a hub identity: created once, its admin flag and its group roles
    kept as the hub says."""
    import secrets

    from mlflow.server.auth import store

    sharing = tuple(g for g in groups if g in settings().sharing_groups)
    if _known.get(username) == (admin, sharing):
        return
    if not store.has_user(username):
        # it never logs in with a password: hub tokens are its credentials
        store.create_user(username, secrets.token_urlsafe(32), is_admin=admin)
    elif store.get_user(username).is_admin != admin:
        store.update_user(username, is_admin=admin)
    user = store.get_user(username)
    mine = {r.name: r for r in store.list_user_roles(user.id) if r.name.startswith(ROLE_PREFIX)}
    for group in sharing:
        role = group_role(group)
        if role.name not in mine:
            store.assign_role_to_user(user.id, role.id)
    for name, role in mine.items():
        if name[len(ROLE_PREFIX) :] not in sharing:
            store.unassign_role_from_user(user.id, role.id)
    _known[username] = (admin, sharing)


def group_role(group: str) -> Any:
    """The MLflow role of a sharing hub group (created on first use)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    name = ROLE_PREFIX + group
    try:
        return store.get_role_by_name(WORKSPACE, name)
    except MlflowException:
        return store.create_role(name, WORKSPACE, f"members of hub group {group}")


def authenticate_request() -> Any:
    """MLflow's ``authorization_function``: the request's hub token, or basic auth."""
    from flask import Response, request
    from mlflow.server.auth import authenticate_request_basic_auth
    from werkzeug.datastructures import Authorization

    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        return authenticate_request_basic_auth()  # MLflow's own admin account
    if scheme.lower() not in ("bearer", "token") or not credential.strip():
        return Response(
            "Authentication required: send a hub token (MLFLOW_TRACKING_TOKEN)",
            401,
            {"WWW-Authenticate": 'Bearer realm="dsplatform"'},
        )
    try:
        identity = hub().identity(credential.strip())
    except (OSError, urllib.error.URLError) as e:
        return Response(f"The hub cannot check this token now: {e}", 503)
    if identity is None:
        return Response("Unknown or expired hub token", 401)
    admin = identity.admin
    if identity.kind == "service":
        if identity.name not in settings().trusted_services:
            return Response(f"The hub service {identity.name!r} may not use MLflow", 403)
        acting_for = request.headers.get(IMPERSONATE)
        if acting_for:  # the catalog's MLflow UI route, for a user logged in to the hub
            as_user = hub().user(acting_for)
            if as_user is None:
                return Response(f"No hub user {acting_for[:100]!r}", 403)
            identity, admin = as_user, as_user.admin
        else:
            admin = True  # the platform itself (listing, promotions)
    username = mlflow_username(identity)
    sync_user(username, admin, identity.groups)
    return Authorization("basic", {"username": username, "password": ""})


# --- protected aliases and group sharing (Flask hooks of MLflow's app) ----------------------

ALIAS_PATHS = ("/mlflow/registered-models/alias",)
MODEL_DELETE_PATHS = ("/mlflow/registered-models/delete",)
VERSION_DELETE_PATHS = ("/mlflow/model-versions/delete",)


def _body() -> dict[str, Any]:
    from flask import request

    data = request.get_json(force=True, silent=True) or {}
    if not data and request.args:
        data = dict(request.args)
    return data


def protect_aliases() -> Any:
    """Refuse direct moves of protected aliases (runs after MLflow authenticated the call)."""
    from flask import g, request

    protected = settings().protected_aliases
    path = request.path
    if not protected or request.method not in ("POST", "DELETE", "PATCH"):
        return None
    if (g.get("mlflow_authenticated_user") or "").startswith(SERVICE_PREFIX):
        return None  # the catalog's promotion flow
    body = _body()
    name = str(body.get("name", ""))
    if path.endswith(ALIAS_PATHS) and body.get("alias") in protected:
        return _refuse(f"alias {body['alias']!r} of {name!r}")
    if path.endswith(MODEL_DELETE_PATHS + VERSION_DELETE_PATHS) and name:
        aliases = _aliases(name)
        version = str(body.get("version", ""))
        held = sorted(
            a for a, v in aliases.items() if a in protected and (not version or v == version)
        )
        if held:
            what = f"version {version} of {name!r}" if version else f"model {name!r}"
            return _refuse(f"{what} (it holds {', '.join(held)})")
    return None


def check_versions() -> Any:
    """A model-version call naming no possible version (``0``, ``1.5``, twenty digits) is a
    404 here, before MLflow's store sees it (its SQL store answered 500, which clients retry
    for minutes)."""
    from flask import Response, request

    if "/model-versions/" not in request.path:
        return None
    version = _body().get("version")
    if version is None or is_version(version):
        return None
    message = f"No model version {str(version)[:40]!r}: versions are 1, 2, 3, …"
    body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": message})
    return Response(body, 404, mimetype="application/json")


def _aliases(name: str) -> dict[str, str]:
    from mlflow.server.handlers import _get_model_registry_store

    try:
        model = _get_model_registry_store().get_registered_model(name)
    except Exception:
        return {}
    return {a: str(v) for a, v in (model.aliases or {}).items()}


def _refuse(what: str) -> Any:
    from flask import Response

    message = (
        f"{what} is protected: it moves only through a reviewed promotion "
        "(POST /services/catalog/api/models/NAME/promotions)"
    )
    body = json.dumps({"error_code": "PERMISSION_DENIED", "message": message})
    return Response(body, 403, mimetype="application/json")


def share_with_groups(response: Any) -> Any:
    """After an experiment or model is created: its creator's sharing groups may edit it."""
    from flask import g, request

    sharing = settings().sharing_groups
    if not sharing or response.status_code != 200 or request.method != "POST":
        return response
    path = request.path
    if path.endswith("/mlflow/experiments/create"):
        kind, key = "experiment", (response.get_json(silent=True) or {}).get("experiment_id")
    elif path.endswith("/mlflow/registered-models/create"):
        model = (response.get_json(silent=True) or {}).get("registered_model") or {}
        kind, key = "registered_model", model.get("name")
    else:
        return response
    username = g.get("mlflow_authenticated_user") or ""
    groups = _known.get(username, (False, ()))[1]
    if key:
        from mlflow.server.auth import store

        for group in groups:
            store.add_role_permission(group_role(group).id, kind, str(key), "EDIT")
    return response


def create_app(app: Any = None) -> Any:
    """``mlflow server --app-name dsplatform``: MLflow's auth app with the platform's rules."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as mlflow_auth_app

    flask = app or flask_app
    served = mlflow_auth_app(flask)  # registers MLflow's authentication first
    flask.before_request(check_versions)
    flask.before_request(protect_aliases)
    flask.after_request(share_with_groups)
    return served
