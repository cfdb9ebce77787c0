"""The typed records that cross layers: registry versions, dataset versions, catalog entries.

A catalog lists :class:`DatasetEntry` records (the hub's API sends them as JSON, the REST
layer and widgets show them); a :class:`~server_ext.registry.Registry` resolves a
:class:`Version` and describes it as a :class:`DatasetVersion`, which the shared cache
fetches and the workspace materialises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Version:
    """A released version of a dataset in its registry."""

    tag: str  # "iris@v1.2.0", usable as a git rev
    version: str  # "v1.2.0"
    key: tuple[int, int, int]
    stages: tuple[str, ...] = ()  # GTO stages this version is promoted to now


@dataclass(frozen=True)
class DatasetVersion:
    """One dataset version as recorded in the registry at its tag."""

    name: str
    version: str
    registry: str
    tag: str
    rev: str  # commit sha the tag points to
    path: str  # path of the dataset in the registry
    dir_md5: str  # the content hash: DVC's "<md5>.dir" of a directory, "<md5>" of a file
    size: int | None
    nfiles: int | None
    description: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_file(self) -> bool:
        """A single-file dataset (DVC tracks a file, not a directory)."""
        return not self.dir_md5.endswith(".dir")

    @property
    def file_name(self) -> str:
        """The name of a single-file dataset's file (its name in the registry)."""
        return self.path.replace("\\", "/").rpartition("/")[2]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetVersion:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["labels"] = tuple(fields.get("labels", ()))
        return cls(**fields)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset as a catalog lists it: where it lives and its released versions."""

    name: str
    registry: str
    versions: tuple[str, ...]  # oldest first
    latest: str | None
    stages: Mapping[str, str] = field(default_factory=dict)  # stage -> version
    description: str = ""
    labels: tuple[str, ...] = ()
    size: int | None = None  # of the latest version
    nfiles: int | None = None
    path: str = ""  # in the registry
    kind: str = "directory"  # or "file": a single-file dataset
    error: str = ""  # why the catalog could not describe the latest version, if it could not

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the REST APIs (hub, catalog service, ``/dsdata/api/``)."""
        return {
            "name": self.name,
            "registry": self.registry,
            "description": self.description,
            "labels": list(self.labels),
            "versions": list(self.versions),
            "stages": dict(self.stages),
            "latest": self.latest,
            "size": self.size,
            "nfiles": self.nfiles,
            "path": self.path,
            "kind": self.kind,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetEntry:
        """An entry from its JSON object; unknown keys are ignored, missing ones default."""
        return cls(
            name=str(data["name"]),
            registry=str(data.get("registry", "")),
            versions=tuple(str(v) for v in data.get("versions", ())),
            latest=data.get("latest"),
            stages={str(k): str(v) for k, v in dict(data.get("stages") or {}).items()},
            description=str(data.get("description") or ""),
            labels=tuple(str(label) for label in data.get("labels") or ()),
            size=data.get("size"),
            nfiles=data.get("nfiles"),
            path=str(data.get("path") or ""),
            kind="file" if data.get("kind") == "file" else "directory",
            error=str(data.get("error") or ""),
        )


@dataclass(frozen=True)
class VersionDetail:
    """One version of a dataset as ``info`` shows it."""

    version: str
    tag: str
    rev: str
    size: int | None
    nfiles: int | None
    content_hash: str
    cached: bool  # complete in the shared cache: a pull downloads nothing


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's entry and the details of each version, newest first."""

    entry: DatasetEntry
    versions: tuple[VersionDetail, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "version_details": [asdict(v) for v in self.versions]}
