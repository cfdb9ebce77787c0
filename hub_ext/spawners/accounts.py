"""One unix account per hub user: the sandbox (preload included) runs as it, never as root.

``account_name`` maps a hub user name to a valid, collision-free system account name from the
admin's template (pure); ``ensure_account`` creates the account on first spawn with
``useradd`` (no login shell, no home directory created, a uid from the configured range) and
returns it afterwards, so its uid is stable. The workspace is created owned by it, mode 0700.
As in JupyterHub's ``LocalProcessSpawner``/TLJH (``jupyter-{username}``), but created by the
hub itself and without systemd.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

# what useradd accepts everywhere (shadow-utils' default NAME_REGEX), at most 32 characters
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NOLOGIN = next(
    (p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if os.path.exists(p)),
    "/bin/false",
)
_lock = threading.Lock()  # useradd takes /etc/passwd's lock; one at a time from this hub


class AccountError(RuntimeError):
    """The account could not be created or used (the spawn fails with this message)."""


@dataclass(frozen=True)
class Account:
    """A sandbox's unix account."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)


def account_name(template: str, username: str) -> str:
    """The account for hub user ``username`` under ``template`` (e.g. ``"dsp-{username}"``).

    The user name is lowercased and reduced to ``[a-z0-9_-]``; whenever that changes it, or
    the result would be longer than 32 characters, a hash of the original name is appended
    so two hub users never share an account (``"Bob.Smith"`` -> ``"dsp-bob-smith-1a2b3c4d"``).

    Raises:
        ValueError: the template cannot give a valid name.
    """
    safe = re.sub(r"[^a-z0-9_-]+", "-", username.lower()).strip("-") or "user"
    name = template.format(username=safe)
    if safe != username or len(name) > 32 or not NAME_RE.match(name):
        digest = hashlib.sha256(username.encode()).hexdigest()[:8]
        room = 32 - len(template.format(username="")) - len(digest) - 1
        if room < 1:
            raise ValueError(f"account template {template!r} leaves no room for a user name")
        name = template.format(username=f"{safe[:room].rstrip('-')}-{digest}")
    if not NAME_RE.match(name):
        raise ValueError(
            f"account template {template!r} gives {name!r}, not a valid unix account name "
            "(lowercase letters, digits, '_' and '-', starting with a letter or '_')"
        )
    return name


def check_template(template: str) -> None:
    """Start-up check of the template (ValueError with the reason)."""
    if "{username}" not in template:
        raise ValueError(f"account template {template!r} must contain {{username}}")
    account_name(template, "a")
    account_name(template, "A.Very-Long User@Name.Example.Org")


def ensure_account(name: str, home: Path, comment: str, uid_range: tuple[int, int]) -> Account:
    """The account ``name`` (home: the workspace ``home``), created now if it does not exist.

    Raises:
        AccountError: useradd failed (the message says why), or the account is privileged.
    """
    with _lock:
        existing = Account.lookup(name)
        if existing is not None:
            if existing.uid == 0 or existing.gid == 0:
                raise AccountError(f"account {name!r} is privileged (uid/gid 0): refusing it")
            return existing
        low, high = uid_range
        command = [
            "useradd",
            "--no-create-home",
            "--no-log-init",
            "--user-group",
            "--home-dir", os.fspath(home),
            "--shell", NOLOGIN,
            "--comment", comment[:200].replace(":", " "),
            "-K", f"UID_MIN={low}", "-K", f"UID_MAX={high}",
            "-K", f"GID_MIN={low}", "-K", f"GID_MAX={high}",
            name,
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        created = Account.lookup(name)
        if created is None:
            raise AccountError(
                f"could not create the sandbox account {name!r}: "
                f"{(proc.stderr or proc.stdout).strip() or f'useradd exited {proc.returncode}'}"
            )
        return created


def prepare_workspace(path: Path, account: Account) -> None:
    """The workspace directory, owned by ``account`` and private to it (mode 0700).

    Parents are created traversable (0711) but not listable by sandbox accounts.
    """
    traversable_dirs(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if path.is_symlink() or not path.is_dir():
        raise AccountError(f"workspace {path} is not a directory")
    if (st.st_uid, st.st_gid) != (account.uid, account.gid):
        os.chown(path, account.uid, account.gid)
    os.chmod(path, 0o700)


def traversable_dirs(path: Path) -> None:
    """Create ``path`` and missing parents as 0711: others pass through, list nothing."""
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    for directory in missing:
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        directory.chmod(0o711)  # explicitly: the hub's umask is 077


def private_dir(path: Path, account: Account) -> None:
    """A directory only ``account`` can use (e.g. its DVC remote for experiment outputs)."""
    traversable_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    os.chown(path, account.uid, account.gid)
    os.chmod(path, 0o700)


def usable_by_others(path: Path) -> Path | None:
    """The first existing directory on the way to ``path`` that other accounts cannot
    traverse, or None (directories yet to be created are made traversable)."""
    for candidate in [*reversed(path.parents), path]:
        try:
            mode = candidate.stat().st_mode
        except FileNotFoundError:
            return None
        if candidate.is_dir() and not mode & 0o001:
            return candidate
    return None


_PR_SET_NO_NEW_PRIVS = 38


def drop_privileges(account: Account) -> None:
    """Become ``account`` for good (in a forked child, before exec): no supplementary groups,
    its gid and uid, and no_new_privs so no setuid program can give root back."""
    import ctypes

    os.setgroups([])
    os.setgid(account.gid)
    os.setuid(account.uid)
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if os.getuid() != account.uid or os.geteuid() != account.uid:
        raise OSError("could not drop root privileges")
