"""Dataset references (``NAME[@VERSION]``) and target paths, validated (pure).

Names follow DVC/GTO artifact naming; versions are ``latest``, ``vX``, ``vX.Y`` or
``vX.Y.Z`` (a prefix picks the newest matching release). Target paths must stay inside
the workspace: no absolute paths elsewhere, no ``..`` escapes, no option-like names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidReference

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,98}[a-z0-9])?$")
VERSION_RE = re.compile(r"^v(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?$")
STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # a GTO stage, e.g. "prod"
TAG_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str | None  # None = latest

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def stage(self) -> str | None:
        """``iris@prod``: the version currently promoted to stage ``prod``."""
        if self.version is None or VERSION_RE.match(self.version):
            return None
        return self.version

    @property
    def version_prefix(self) -> tuple[int, ...]:
        if self.version is None or self.stage:
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
    if not NAME_RE.match(name):
        raise InvalidReference(
            f"Invalid dataset name {name!r}: lowercase letters, digits, '-' and '_', "
            "starting and ending with a letter or digit"
        )
    if version in ("latest", ""):
        version = None
    if version is not None and not (VERSION_RE.match(version) or STAGE_RE.match(version)):
        raise InvalidReference(
            f"Invalid version {version!r}: use 'latest', 'v2', 'v2.1', 'v2.1.0' or a stage "
            "like 'prod'"
        )
    return DatasetRef(name, version)


def parse_tag_version(text: str) -> tuple[int, int, int] | None:
    match = TAG_VERSION_RE.match(text)
    if not match:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


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
