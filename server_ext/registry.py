"""Data registries: where dataset versions come from.

:class:`Registry` is the seam a data source implements: list its released versions,
describe one version (content hash, size, files), fetch its objects into the shared cache,
verified. :class:`DvcRegistry` is the DVC one: a git repository whose ``dvc.yaml`` declares
``artifacts:`` of ``type: dataset`` (also in ``dvc.yaml`` files of sub-directories: GTO's
``DIR:NAME``); its versions and stages are what GTO's API reads from the git tags (``gto
register``/``assign``/``deprecate``), and a version's bytes are what ``dvc artifacts get``
gives: DVC's API at the version's tag. A dataset is a DVC-tracked directory or a single
file. The ``dvc`` and ``gto`` CLIs are never run. A new kind of source is one new
module with a class of this protocol.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NotADataset, RegistryUnavailable, UnknownDataset, UnknownVersion
from .records import DatasetVersion, Version
from .refs import DatasetRef, parse_tag_version

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


_listed: dict[str, tuple[frozenset[tuple[str, Any]], dict[str, list[Version]]]] = {}


def list_tags(url: str) -> dict[str, list[Version]]:
    """Registered versions per dataset name, oldest first, with their stages: the registry
    as ``gto show`` reads it (GTO's own Python API on the registry's git tags).

    GTO reads every tag; its answer is kept while the registry's refs (one cheap
    ``ls-remote``) stay the same.
    """
    from gto.registry import GitRegistry
    from scmrepo.git.backend.dulwich import ls_remote

    try:
        refs = frozenset(ls_remote(url).items())
    except Exception as e:  # dulwich raises many types for unreachable repos
        raise RegistryUnavailable(f"Cannot read data registry {url!r}: {e}") from None
    known = _listed.get(url)
    if known is not None and known[0] == refs:
        return {name: list(versions) for name, versions in known[1].items()}
    try:
        with GitRegistry.from_url(url) as registry:
            found = versions_from_artifacts(registry.get_artifacts())
    except Exception as e:  # git, dulwich and GTO raise many types for unreadable repos
        raise RegistryUnavailable(f"Cannot read data registry {url!r}: {e}") from None
    _listed[url] = (refs, found)
    return {name: list(versions) for name, versions in found.items()}


def versions_from_artifacts(artifacts: Mapping[str, Any]) -> dict[str, list[Version]]:
    """GTO's artifacts -> our versions, with GTO's semantics (``gto show``'s defaults):
    deprecated artifacts and deregistered versions are gone, only annotated tags count,
    versions are semantic versions (pre-releases included) in semver order, and a stage
    names the version of its newest assignment that was not unassigned."""
    from gto.constants import VersionSort

    found: dict[str, list[Version]] = {}
    for name, artifact in artifacts.items():
        if not artifact.is_active:  # NAME@deprecated
            continue
        stages: dict[str, list[str]] = {}
        vstages = artifact.get_vstages(registered_only=False, sort=VersionSort.Timestamp)
        for stage, assigned in vstages.items():
            for vstage in assigned:
                stages.setdefault(vstage.version, []).append(stage)
        versions = []
        for version in artifact.get_versions(include_non_explicit=False, ascending=True):
            key = parse_tag_version(version.version)
            if key is None or not version.registrations:
                continue  # a commit GTO discovered without a registration tag
            tag = version.registrations[-1].tag
            versions.append(
                Version(tag, version.version, key, tuple(sorted(stages.get(version.version, ()))))
            )
        if versions:
            found[name] = versions
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
    if ref.exact:
        matching = [v for v in versions if v.version == ref.version]
    else:
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
    """Read the dataset's declaration and content hash at ``version``'s tag.

    Raises:
        NotADataset: declared with another ``type`` (a model, ...).
        UnknownDataset: not declared in a ``dvc.yaml``, or not tracked by DVC.
    """
    from dvc.repo.artifacts import Artifacts

    dirname, short = Artifacts.parse_path(name)
    dvcyaml = f"{dirname}/dvc.yaml" if dirname else "dvc.yaml"
    try:
        declared = {k.replace("\\", "/"): v for k, v in repo.artifacts.read().items()}
    except Exception as e:  # an unreadable dvc.yaml
        raise UnknownDataset(
            f"Cannot read the artifacts of {url!r} at {version.tag}: {e}"
        ) from None
    artifact = declared.get(dvcyaml, {}).get(short)
    if artifact is None:
        raise UnknownDataset(f"{name!r} is declared in no {dvcyaml} of {url!r} at {version.tag}")
    if artifact.type not in (None, "dataset"):
        raise NotADataset(f"{name!r} is a {artifact.type}, not a dataset, in {url!r}")
    try:
        path = repo.artifacts.get_path(name)
        _, entry = repo.get_data_index_entry(path)
    except Exception as e:  # DVC's errors for paths no .dvc file or stage produces
        raise UnknownDataset(f"{name!r} at {version.tag}: {e}") from None
    if entry is None or entry.hash_info is None or not entry.hash_info.value:
        raise UnknownDataset(f"{name!r} at {version.tag}: {path} is not tracked by DVC")
    meta = entry.meta
    is_dir = bool(entry.hash_info.isdir)
    return DatasetVersion(
        name=name,
        version=version.version,
        registry=url,
        tag=version.tag,
        rev=repo.scm.resolve_rev(version.tag),
        path=path.replace("\\", "/"),
        dir_md5=entry.hash_info.value,
        size=getattr(meta, "size", None),
        nfiles=getattr(meta, "nfiles", None) if is_dir else 1,
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
