"""Data registries: where dataset versions come from.

:class:`Registry` is the seam a data source implements: list its released versions,
describe one version (content hash, size, files), fetch its objects into the shared cache,
verified. :class:`DvcRegistry` is the DVC one: a git repository whose ``dvc.yaml`` declares
``artifacts:`` of ``type: dataset``; a version is an annotated tag ``NAME@vX.Y.Z`` (what
``gto register`` writes and ``dvc artifacts get`` resolves). Everything goes through DVC's
and scmrepo's Python APIs; the ``dvc`` CLI is never run. A new kind of source is one new
module with a class of this protocol.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import RegistryUnavailable, UnknownDataset, UnknownVersion
from .records import DatasetVersion, Version
from .refs import STAGE_RE, DatasetRef, parse_tag_version

if TYPE_CHECKING:
    from .cache import SharedCache

ProgressFn = Callable[[int, int], None]  # (bytes done, files done)


class Registry(Protocol):
    """A source of versioned datasets (a DVC registry, the hub's fetch service, ...)."""

    url: str

    def versions(self) -> dict[str, list[Version]]:
        """Released versions per dataset name, oldest first, with their current stages."""
        ...

    def describe(self, name: str, version: Version) -> DatasetVersion:
        """The dataset's content hash, size and files at ``version``."""
        ...

    def fetch(
        self, dataset: DatasetVersion, cache: SharedCache, progress: ProgressFn | None = None
    ) -> int:
        """Put ``dataset``'s missing objects into ``cache``, verified; how many were fetched.

        Raises:
            RegistryUnavailable, CorruptData: nothing incomplete or corrupt is left looking
                complete in the cache.
        """
        ...


class DvcRegistry:
    """A DVC data registry (git URL or path), read with DVC's and scmrepo's Python APIs."""

    def __init__(self, url: str, cache_dir: Path, site_dir: Path | None = None) -> None:
        self.url = url
        self.cache_dir = Path(cache_dir)
        # DVC's per-machine state (its repo/ directory is world-writable by design): kept out
        # of a cache that others read
        self.site_dir = Path(site_dir) if site_dir is not None else site_cache_dir(self.cache_dir)

    def versions(self) -> dict[str, list[Version]]:
        return list_tags(self.url)

    def describe(self, name: str, version: Version) -> DatasetVersion:
        return describe_version(self.url, name, version, self.cache_dir)

    def fetch(
        self, dataset: DatasetVersion, cache: SharedCache, progress: ProgressFn | None = None
    ) -> int:
        with cache.lock(dataset.dir_md5):
            if cache.is_complete(dataset.dir_md5):
                return 0  # another puller fetched it while we waited
            with open_at(self.url, dataset.tag, cache.root, self.site_dir) as repo:
                return cache.fetch(repo, dataset, progress)


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
def open_at(url: str, rev: str, cache_dir: Path, site_dir: Path | None = None) -> Iterator[Any]:
    """``dvc.repo.Repo`` of ``url`` at ``rev`` whose object cache is ``cache_dir``."""
    from dvc.repo import Repo

    site = Path(site_dir or site_cache_dir(cache_dir))
    # DVC would create site/repo world-writable (one per machine, for every user): ours is ours
    (site / "repo").mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {"cache": {"dir": str(cache_dir)}, "core": {"site_cache_dir": str(site)}}
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
