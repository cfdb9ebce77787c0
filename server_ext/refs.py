"""Dataset references (``NAME[@VERSION]``) and target paths, validated (pure).

Names are GTO's artifact names, ``[DIR:]NAME`` (``DIR:`` for a ``dvc.yaml`` in a
sub-directory of the registry; its tags spell it ``DIR=NAME@v1.0.0``); versions are
``latest``, ``vX``, ``vX.Y`` (the newest matching release), a full semantic version
``vX.Y.Z[-PRE]``, or a stage. Target paths must stay inside the workspace: no absolute
paths elsewhere, no ``..`` escapes, no option-like names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidReference

MAX_NAME = 200
VERSION_RE = re.compile(r"^v(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?$")  # a prefix
STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # a GTO stage, e.g. "prod"


def is_name(text: str) -> bool:
    """A GTO artifact name (``iris``, ``features/sub:iris``)?"""
    from gto.constants import fullname_re

    return len(text) <= MAX_NAME and fullname_re.match(text) is not None


def shown(value: Any, limit: int = 60) -> str:
    """``value`` for a message (its repr), cut to about ``limit`` characters; a long string
    says how long it was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return repr(value[:limit]) + f"… ({len(value)} chars)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def release_tag(name: str, version: str) -> str:
    """The git tag GTO writes to register ``version`` of ``name`` (``DIR=NAME@vX.Y.Z``)."""
    from gto.constants import name_to_tag

    return f"{name_to_tag(name)}@{version}"


def default_target(name: str, registry_path: str, is_file: bool) -> str:
    """``data/NAME`` for a directory, ``data/<file name>`` for a single file."""
    if is_file and registry_path:
        return f"data/{Path(registry_path).name}"
    return f"data/{name.rpartition(':')[2]}"


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str | None  # None = latest

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def stage(self) -> str | None:
        """``iris@prod``: the version currently promoted to stage ``prod``."""
        if self.version is None or VERSION_RE.match(self.version) or self.exact:
            return None
        return self.version

    @property
    def exact(self) -> bool:
        """A full version (``v1.2.0``, ``v1.2.0-rc.1``): only that release matches."""
        return self.version is not None and parse_tag_version(self.version) is not None

    @property
    def version_prefix(self) -> tuple[int, ...]:
        if self.version is None or self.stage or self.exact:
            return ()
        match = VERSION_RE.match(self.version)
        assert match is not None
        return tuple(int(g) for g in match.groups() if g is not None)


def parse_ref(text: str, version: str | None = None) -> DatasetRef:
    """``"iris@v2"`` -> ``DatasetRef("iris", "v2")``; ``version`` overrides the suffix.

    Raises:
        InvalidReference: with what is allowed.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference("A dataset name is required, e.g. 'iris' or 'iris@v2'")
    name, _, suffix = text.partition("@")
    version = version or suffix or None
    if not is_name(name):
        raise InvalidReference(
            f"Invalid dataset name {shown(name)}: use a GTO artifact name like 'iris' or "
            "'sub/dir:iris' (letters, digits, '-', '_' and '/')"
        )
    if version in ("latest", ""):
        version = None
    if version is not None and not (
        VERSION_RE.match(version) or STAGE_RE.match(version) or parse_tag_version(version)
    ):
        raise InvalidReference(
            f"Invalid version {shown(version)}: use 'latest', 'v2', 'v2.1', 'v2.1.0', "
            "'v2.1.0-rc.1' or a stage like 'prod'"
        )
    return DatasetRef(name, version)


def parse_tag_version(text: str) -> tuple[int, int, int] | None:
    """``"v1.2.3"`` or ``"v1.2.3-rc.1"`` (GTO's semantic versions) -> ``(1, 2, 3)``."""
    key = semver_key(text)
    return None if key is None else (key.major, key.minor, key.patch)


def semver_key(text: str) -> Any:
    """A sortable semantic version of ``vX.Y.Z[-PRE][+BUILD]`` (pre-releases sort before
    their release), or None."""
    from gto.versions import SemVer

    if not isinstance(text, str) or not text.startswith("v") or len(text) > 100:
        return None
    try:
        return SemVer.parse(text)
    except Exception:  # GTO raises its own error types for invalid versions
        return None


def resolve_target(root: Path, path: str | None, default: str) -> Path:
    """The absolute target directory for a pull, inside ``root``.

    Raises:
        InvalidReference: absolute paths outside ``root``, ``..`` escapes, option-like
            names, the workspace root itself.
    """
    text = default if path in (None, "") else str(path)
    if text.startswith("-"):
        raise InvalidReference(f"Invalid target path {text!r}: must not start with '-'")
    if "\0" in text:
        raise InvalidReference("Invalid target path: contains a NUL byte")
    root = root.resolve()
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = root / candidate
    target = Path(os.path.normpath(candidate))
    # resolve symlinks of the existing part (also above a parent yet to be created, and
    # dangling ones), so a link cannot lead outside
    parent = target.parent.resolve()
    resolved = parent / target.name
    if resolved == root or root not in resolved.parents:
        raise InvalidReference(
            f"Target path {text!r} is outside the workspace {str(root)!r}; "
            "use a path inside it, e.g. data/NAME"
        )
    inside = resolved.relative_to(root).parts
    if inside[0] in (".dsdata", ".git", ".dvc"):
        raise InvalidReference(
            f"Target path {text!r} is inside {inside[0]}/, which holds the project's own state"
        )
    return resolved


def inside_project(root: Path, path: str, what: str) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, links followed; it must stay
    inside ``root``.

    Raises:
        InvalidReference: outside the project (``..``, an absolute path elsewhere, a link
            leading out), or a NUL byte.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise InvalidReference(f"A {what} path is required (a file inside the project)")
    base = root.resolve()
    resolved = (base / path).resolve()
    if resolved != base and base not in resolved.parents:
        raise InvalidReference(
            f"The {what} path {shown(path)} is outside the project {str(base)!r}; "
            "use a path inside it"
        )
    return resolved
