"""What local mode isolates, checked and set up when the hub starts (``wire``).

As root, the hub makes everything it creates private (umask 077: its database, secrets,
MLflow store and registry metadata are readable by the hub only), makes its existing
database and cookie secret private, and refuses to start (naming the key and the path)
when sandbox accounts could not reach their workspaces or run the toolchain's Python. It
warns where the admin's own settings leave a gap: a local registry other accounts can read
(groups are then no boundary for it), a DVC remote shared by every sandbox.

Not root (a laptop demo): sandboxes run as the hub's own user, and the hub says so, loudly.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from traitlets.config import Config

from hub_ext.admission.policy import trait_value
from hub_ext.errors import ConfigError
from hub_ext.spawners.accounts import check_template, usable_by_others
from hub_ext.spawners.local import LocalProfileSpawner, isolating, singleuser_command
from hub_ext.state import state_dir

NOT_ISOLATED = """
  dsplatform: WARNING: the hub is not running as root, so sandboxes are NOT isolated from
  each other: every user's server runs as {user}, can read and write every other user's
  workspace, signal their processes and read the hub's state. Memory and CPU limits are
  per process (rlimits) and can be bypassed. Fine for a demo on your own machine; for
  users you do not trust, run the hub as root (one unix account and cgroup per sandbox).
"""


def warn(message: str) -> None:
    print(f"dsplatform: WARNING: {message}", file=sys.stderr, flush=True)


def workspace_root(c: Config, spawner_class: type) -> Path:
    template = c[spawner_class.__name__].get("home_dir_template") or next(
        (c[k]["home_dir_template"] for k in ("LocalProfileSpawner", "SimpleLocalProcessSpawner")
         if k in c and "home_dir_template" in c[k]),
        str(state_dir() / "users" / "{username}"),
    )  # fmt: skip
    return Path(str(template).split("{username}")[0] or "/").resolve()


def check_reachable(path: Path, what: str) -> None:
    blocked = usable_by_others(path)
    if blocked is not None:
        try:
            mode = oct(blocked.stat().st_mode & 0o777)
        except OSError:
            mode = "missing"
        raise ConfigError(
            f"{what}: sandbox accounts cannot reach {path}: {blocked} ({mode}) is not "
            "traversable by other users (chmod o+x, or move it)"
        )


OTHER_UID = 65534  # "nobody": an account that owns nothing, like a new sandbox account


def check_python(python: str, what: str) -> None:
    """Run the toolchain's interpreter as another account, as a sandbox will: it must start
    and import JupyterHub (its stdlib and packages readable, every directory traversable)."""
    interpreter = singleuser_command(python)[0]
    if interpreter in _usable:
        return

    def as_other() -> None:
        os.setgroups([])
        os.setgid(OTHER_UID)
        os.setuid(OTHER_UID)

    try:
        proc = subprocess.run(
            [interpreter, "-c", "import jupyterhub, server_ext"],
            preexec_fn=as_other,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as e:
        raise ConfigError(f"{what}: sandbox accounts cannot run {interpreter}: {e}") from None
    if proc.returncode != 0:
        error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(
            f"{what}: {interpreter} does not start for a sandbox account ({error}); its "
            "installation must be readable and traversable by other users (a Python under "
            "/root is not: use the system's or one under /opt)"
        )
    _usable.add(interpreter)


_usable: set[str] = set()  # interpreters that started for another account


def make_private(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_uid == os.geteuid():
            path.chmod(0o700 if path.is_dir() else 0o600)


def local_and_isolating(spawner_class: type) -> bool:
    local = isinstance(spawner_class, type) and issubclass(spawner_class, LocalProfileSpawner)
    return local and isolating()


def check(c: Config, spawner_class: type) -> None:
    """Local mode as root: what sandbox accounts must be able to use (ConfigError naming
    the key and the path); nothing for other spawners or a hub that is not root."""
    if not local_and_isolating(spawner_class):
        return
    where = f"c.{spawner_class.__name__}"
    try:
        check_template(trait_value(c, spawner_class, "account_template"))
    except ValueError as e:
        raise ConfigError(f"{where}.account_template: {e}") from None
    low, high = trait_value(c, spawner_class, "account_uid_range")
    if not 1000 <= low <= high:
        raise ConfigError(f"{where}.account_uid_range: ({low}, {high}) must be 1000 <= min <= max")
    check_reachable(workspace_root(c, spawner_class), f"{where}.home_dir_template")
    check_python("", "the hub's Python environment (sys.executable)")
    for name, toolchain in trait_value(c, spawner_class, "toolchains").items():
        if isinstance(toolchain, dict) and toolchain.get("local_python"):
            check_python(toolchain["local_python"], f"c.ProfileSpawner.toolchains[{name!r}]")


def wire(c: Config, spawner_class: type) -> None:
    """Local mode's hardening and warnings (a no-op for other spawners)."""
    if not (isinstance(spawner_class, type) and issubclass(spawner_class, LocalProfileSpawner)):
        return
    if not isolating():
        import getpass

        print(NOT_ISOLATED.format(user=getpass.getuser()), file=sys.stderr, flush=True)
        return
    os.umask(0o077)  # whatever the hub and its services create is theirs alone
    hub = c.JupyterHub
    db = str(hub.get("db_url", "sqlite:///jupyterhub.sqlite"))
    if db.startswith("sqlite:///"):
        make_private(Path(db[len("sqlite:///") :]))
    make_private(Path(hub.get("cookie_secret_file", "jupyterhub_cookie_secret")))
    for registry in c.DatasetCatalog.get("registries", []):
        path = Path(urlparse(str(registry)).path if "://" in str(registry) else str(registry))
        if path.exists() and usable_by_others(path) is None and path.stat().st_mode & 0o004:
            warn(
                f"sandbox accounts can read the registry {path} directly, so "
                "c.DatasetCatalog.dataset_groups does not restrict it: chmod o-rwx it "
                "(the catalog service reads it for them)"
            )
    remote = str(c.ProfileSpawner.get("dvc_remote", ""))
    if remote and "://" not in remote and "{username}" not in remote:
        warn(
            f"c.ProfileSpawner.dvc_remote {remote!r} is shared by every sandbox: any user can "
            "overwrite others' experiment outputs; use a per-user path with {username}"
        )
    if not c.PlatformCatalog.get("enabled", False) and c.DatasetCatalog.get("registries"):
        warn(
            "without the catalog service (c.PlatformCatalog.enabled) sandboxes read the "
            "registries themselves: they must be readable by sandbox accounts, and "
            "c.DatasetCatalog.dataset_groups is not a boundary"
        )
