"""DVC data registries: versions from GTO-style tags, dataset descriptions at a version.

A registry is a git repository whose ``dvc.yaml`` declares ``artifacts:`` of
``type: dataset``; a version is an annotated tag ``NAME@vX.Y.Z`` (what ``gto register``
writes and ``dvc artifacts get`` resolves). Everything goes through DVC's and scmrepo's
Python APIs; the ``dvc`` CLI is never run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import RegistryUnavailable, UnknownDataset, UnknownVersion
from .refs import STAGE_RE, DatasetRef, parse_tag_version


@dataclass(frozen=True)
class Version:
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
    dir_md5: str  # DVC's directory hash ("<md5>.dir"): the content hash
    size: int | None
    nfiles: int | None
    description: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data


def list_tags(url: str) -> dict[str, list[Version]]:
    """All released versions per dataset name, oldest first (no clone: ls-remote)."""
    from scmrepo.git.backend.dulwich import ls_remote

    try:
        refs: Mapping[str, Any] = ls_remote(url)
    except Exception as e:  # dulwich raises many types for unreachable repos
        raise RegistryUnavailable(f"Cannot read data registry {url!r}: {e}") from None
    if any("#" in ref for ref in refs) and not any(ref.endswith("^{}") for ref in refs):
        refs = peeled_refs(url)  # promotions are matched to releases by commit
    return versions_from_refs(refs)


def peeled_refs(url: str) -> dict[str, str]:
    """``git ls-remote --tags``: also lists the commit of each annotated tag (``^{}``)."""
    import subprocess

    proc = subprocess.run(
        ["git", "ls-remote", "--tags", url], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RegistryUnavailable(f"Cannot read data registry {url!r}: {proc.stderr.strip()}")
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref:
            refs[ref] = sha
    return refs


def versions_from_refs(refs: Mapping[str, Any]) -> dict[str, list[Version]]:
    """Versions per dataset from git refs (pure): ``NAME@vX.Y.Z`` release tags, and the
    stages of GTO promotion tags ``NAME#STAGE#N`` (the highest N of a stage wins; it names
    the version whose release tag points at the same commit)."""

    def commit(tag: str) -> str:
        peeled = refs.get(f"refs/tags/{tag}^{{}}", refs.get(f"refs/tags/{tag}"))
        return peeled.decode() if isinstance(peeled, bytes) else str(peeled)

    releases: dict[str, list[tuple[str, str, tuple[int, int, int]]]] = {}
    promotions: dict[tuple[str, str], tuple[int, str]] = {}
    for ref in refs:
        if not ref.startswith("refs/tags/") or ref.endswith("^{}"):
            continue
        tag = ref[len("refs/tags/") :]
        name, sep, version = tag.partition("@")
        key = parse_tag_version(version) if sep else None
        if key is not None:
            releases.setdefault(name, []).append((tag, version, key))
            continue
        parts = tag.split("#")
        if len(parts) == 3 and parts[2].isdigit() and STAGE_RE.match(parts[1]):
            number = int(parts[2])
            current = promotions.get((parts[0], parts[1]))
            if current is None or number > current[0]:
                promotions[(parts[0], parts[1])] = (number, commit(tag))
    found: dict[str, list[Version]] = {}
    for name, tags in releases.items():
        tags.sort(key=lambda t: t[2])
        staged: dict[str, list[str]] = {}
        for (stage_name, stage), (_, stage_commit) in promotions.items():
            if stage_name != name:
                continue
            newest = [t for t in tags if commit(t[0]) == stage_commit][-1:]
            for tag, _, _ in newest:
                staged.setdefault(tag, []).append(stage)
        found[name] = [
            Version(tag, version, key, tuple(sorted(staged.get(tag, ()))))
            for tag, version, key in tags
        ]
    return found


def pick_version(ref: DatasetRef, versions: list[Version], registry: str) -> Version:
    """The newest version matching ``ref`` (``v2`` -> newest ``v2.*.*``)."""
    if not versions:
        raise UnknownDataset(f"Dataset {ref.name!r} has no released version in {registry!r}")
    if ref.stage:
        in_stage = [v for v in versions if ref.stage in v.stages]
        if not in_stage:
            stages = sorted({s for v in versions for s in v.stages}) or ["none"]
            raise UnknownVersion(
                f"No version of {ref.name} is in stage {ref.stage!r}; stages: {', '.join(stages)}"
            )
        return in_stage[-1]
    prefix = ref.version_prefix
    matching = [v for v in versions if v.key[: len(prefix)] == prefix]
    if not matching:
        known = ", ".join(v.version for v in versions)
        raise UnknownVersion(f"{ref.name} has no version {ref.version}; versions: {known}")
    return matching[-1]


def site_cache_dir(cache_dir: Path) -> Path:
    return cache_dir / "site"


@contextlib.contextmanager
def open_at(url: str, rev: str, cache_dir: Path) -> Iterator[Any]:
    """``dvc.repo.Repo`` of ``url`` at ``rev`` whose object cache is the shared cache."""
    from dvc.repo import Repo

    config = {
        "cache": {"dir": str(cache_dir), "shared": "group"},
        "core": {"site_cache_dir": str(site_cache_dir(cache_dir))},
    }
    try:
        repo = Repo.open(url, rev=rev, uninitialized=True, config=config)
    except Exception as e:
        raise RegistryUnavailable(f"Cannot open data registry {url!r} at {rev}: {e}") from None
    try:
        yield repo
    finally:
        repo.close()


def describe(repo: Any, url: str, name: str, version: Version) -> DatasetVersion:
    """Read the dataset's declaration and content hash at ``version``'s tag."""
    artifact = None
    for declared in repo.artifacts.read().values():
        artifact = declared.get(name) or artifact
    if artifact is None or (artifact.type not in (None, "dataset")):
        raise UnknownDataset(f"{name!r} is not declared as a dataset in {url!r} at {version.tag}")
    path = repo.artifacts.get_path(name)
    _, entry = repo.get_data_index_entry(path)
    if entry is None or entry.hash_info is None or not entry.hash_info.isdir:
        raise UnknownDataset(f"{name!r} at {version.tag} is not a DVC-tracked directory")
    meta = entry.meta
    return DatasetVersion(
        name=name,
        version=version.version,
        registry=url,
        tag=version.tag,
        rev=repo.scm.resolve_rev(version.tag),
        path=path,
        dir_md5=entry.hash_info.value,
        size=getattr(meta, "size", None),
        nfiles=getattr(meta, "nfiles", None),
        description=artifact.desc or "",
        labels=tuple(artifact.labels or ()),
    )


_described: dict[tuple[str, str], DatasetVersion] = {}


def describe_version(url: str, name: str, version: Version, cache_dir: Path) -> DatasetVersion:
    """Cached :func:`describe` (a released tag never changes)."""
    key = (url, version.tag)
    if key not in _described:
        with open_at(url, version.tag, cache_dir) as repo:
            _described[key] = describe(repo, url, name, version)
    return _described[key]
