"""``c.DataConnections``: the admin's S3 and SQL connections, validated at start-up.

Example::

    c.DataConnections.connections = {
        "lake": {"type": "s3", "endpoint_url": "https://s3.example.com", "bucket": "raw",
                 "prefix": "events/", "credentials": {"env": "LAKE"},
                 "groups": ["ml-research"], "description": "Raw click events"},
        "dwh": {"type": "sql", "url_env": "DWH_URL", "groups": ["ml-research", "analysts"],
                "max_rows": 5_000_000},
    }

Credentials are names of the hub's environment variables (``LAKE_ACCESS_KEY_ID`` and
``LAKE_SECRET_ACCESS_KEY``; ``DWH_URL`` holding a SQLAlchemy URL), never values in the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from traitlets import Dict, Int, Unicode
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
S3_KEYS = {"type", "endpoint_url", "bucket", "prefix", "credentials", "region", "groups",
           "description"}  # fmt: skip
SQL_KEYS = {"type", "url_env", "groups", "description", "max_rows", "timeout"}


@dataclass(frozen=True)
class Connection:
    """One validated connection. ``secret_env``: the hub environment variables it reads."""

    name: str
    type: str  # "s3" or "sql"
    groups: tuple[str, ...]
    description: str = ""
    endpoint_url: str = ""
    bucket: str = ""
    prefix: str = ""
    region: str = ""
    credentials_env: str = ""  # s3: <ENV>_ACCESS_KEY_ID / <ENV>_SECRET_ACCESS_KEY
    url_env: str = ""  # sql: the SQLAlchemy URL's variable
    max_rows: int = 5_000_000
    timeout: int = 600  # seconds a query may run

    @property
    def secret_env(self) -> tuple[str, ...]:
        if self.type == "s3":
            return (f"{self.credentials_env}_ACCESS_KEY_ID",
                    f"{self.credentials_env}_SECRET_ACCESS_KEY")  # fmt: skip
        return (self.url_env,)

    def usable_by(self, groups: list[str] | tuple[str, ...]) -> bool:
        return "*" in self.groups or any(g in self.groups for g in groups)

    def public(self) -> dict[str, Any]:
        """What users see: never a credential, nor the variables that hold one."""
        shown: dict[str, Any] = {"name": self.name, "type": self.type,
                                 "description": self.description}  # fmt: skip
        if self.type == "s3":
            shown.update(bucket=self.bucket, prefix=self.prefix)
        else:
            shown.update(max_rows=self.max_rows, timeout=self.timeout)
        return shown


class DataConnections(Configurable):
    """Connections to the data lake and warehouse, and where their imports are versioned."""

    connections = Dict(
        help="""Connections by name (lower-case letters, digits, -): "s3" with endpoint_url,
        bucket, prefix, credentials {"env": PREFIX} (PREFIX_ACCESS_KEY_ID and
        PREFIX_SECRET_ACCESS_KEY in the hub's environment), region; "sql" with url_env (a
        variable holding a SQLAlchemy URL), max_rows, timeout. Both: groups (hub groups that
        may use it; "*" for everyone), description.

            c.DataConnections.connections = {"lake": {"type": "s3", "bucket": "raw",
                "credentials": {"env": "LAKE"}, "groups": ["ml-research"]}}
        """,
    ).tag(config=True)

    registry = Unicode(
        "",
        help="""The platform-managed DVC registry that imports are published to (created on
        first use; default: registries/imports in the state directory). Its datasets are
        visible to the groups of the connection they came from.""",
    ).tag(config=True)

    import_timeout = Int(
        3600, help="Seconds an import may take in all (it is stopped and leaves nothing)."
    ).tag(config=True)


def _where(name: str) -> str:
    return f"c.DataConnections.connections[{name!r}]"


def parse_connection(name: Any, raw: Any) -> Connection:
    """One connection from the admin's dict (ConfigError naming the key)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"c.DataConnections.connections: {name!r} is not a connection name (lower-case "
            "letters, digits and -, starting with a letter, at most 40)"
        )
    where = _where(name)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a dict, not {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in ("s3", "sql"):
        raise ConfigError(f"{where}: key 'type': {kind!r} is not 's3' or 'sql'")
    allowed = S3_KEYS if kind == "s3" else SQL_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (a {kind} connection has: "
            f"{', '.join(sorted(allowed))})"
        )
    groups = raw.get("groups")
    if (
        not isinstance(groups, list | tuple)
        or not groups
        or not all(isinstance(g, str) and g for g in groups)
    ):
        raise ConfigError(f"{where}: key 'groups': a non-empty list of hub group names")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: key 'description': must be a string")
    common: dict[str, Any] = {"name": name, "type": kind, "groups": tuple(groups),
                              "description": description}  # fmt: skip
    if kind == "s3":
        return _s3(where, raw, common)
    return _sql(where, raw, common)


def _s3(where: str, raw: Mapping[str, Any], common: dict[str, Any]) -> Connection:
    bucket = raw.get("bucket")
    if not isinstance(bucket, str) or not re.match(r"^[a-z0-9][a-z0-9.-]{1,62}$", bucket):
        raise ConfigError(f"{where}: key 'bucket': {bucket!r} is not an S3 bucket name")
    prefix = raw.get("prefix", "")
    if not isinstance(prefix, str) or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ConfigError(f"{where}: key 'prefix': {prefix!r} is not a key prefix like 'events/'")
    endpoint = raw.get("endpoint_url", "")
    if not isinstance(endpoint, str) or (
        endpoint and not endpoint.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{where}: key 'endpoint_url': {endpoint!r} is not an http(s) URL")
    creds = raw.get("credentials")
    env = creds.get("env") if isinstance(creds, Mapping) else None
    if (
        not isinstance(creds, Mapping)
        or set(creds) != {"env"}
        or not isinstance(env, str)
        or not ENV_RE.match(env)
    ):
        raise ConfigError(
            f"{where}: key 'credentials': {{'env': 'PREFIX'}}, where the hub's environment "
            "holds PREFIX_ACCESS_KEY_ID and PREFIX_SECRET_ACCESS_KEY"
        )
    region = raw.get("region", "")
    if not isinstance(region, str):
        raise ConfigError(f"{where}: key 'region': must be a string")
    return Connection(**common, endpoint_url=endpoint, bucket=bucket, prefix=prefix,
                      region=region, credentials_env=env)  # fmt: skip


def _sql(where: str, raw: Mapping[str, Any], common: dict[str, Any]) -> Connection:
    url_env = raw.get("url_env")
    if not isinstance(url_env, str) or not ENV_RE.match(url_env):
        raise ConfigError(
            f"{where}: key 'url_env': the name of a hub environment variable holding the "
            "SQLAlchemy URL (like 'DWH_URL')"
        )
    numbers = []
    for key, default in (("max_rows", 5_000_000), ("timeout", 600)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: key {key!r}: {value!r} is not a positive whole number")
        numbers.append(value)
    return Connection(**common, url_env=url_env, max_rows=numbers[0], timeout=numbers[1])


def load_connections(raw: Any) -> dict[str, Connection]:
    if not isinstance(raw, Mapping):
        raise ConfigError("c.DataConnections.connections: must be a dict of connections")
    return {name: parse_connection(name, spec) for name, spec in raw.items()}


def check(c: Config) -> None:
    """Start-up checks (ConfigError naming the key)."""
    load_connections(DataConnections(config=c).connections)
