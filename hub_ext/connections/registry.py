"""The platform-managed registry that imports are published to: a git + DVC repository with
a local DVC remote, versions registered with GTO's API (``NAME@vX.Y.Z``, the first v1.0.0,
then minor bumps), and each version's lineage in ``imports/NAME.json`` (git-tracked).

Atomic by construction: the import stages its data outside the registry; the registry is
changed under its lock, and the GTO tag is written last. An import killed before that leaves
no version (its half-made commit is dropped by the next import, which starts from the newest
tagged commit), so ``gto show`` and every pull see the registry as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hub_ext.connections.settings import Connection
from hub_ext.datasets.publish import GIT_IDENTITY, git, init_registry
from server_ext.locks import file_lock

FIRST_VERSION = "v1.0.0"
DATASET_RE = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")


class ImportRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.remote = root.parent / f"{root.name}-remote"

    @staticmethod
    def valid_name(name: str) -> bool:
        return bool(DATASET_RE.match(name))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The registry's writer lock, with the registry made (first use) and clean."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root.parent / f".{self.root.name}.lock", 0o600):
            if not (self.root / ".git").is_dir():
                shutil.rmtree(self.root, ignore_errors=True)
                init_registry(self.root, self.remote)
                git(self.root, "tag", "-a", "dsplatform-created", "-m", "the empty registry")
            self._cache_in_remote()
            self._back_to_registered()
            for stale in self.root.parent.glob(".import-*"):  # a killed import's staging
                shutil.rmtree(stale, ignore_errors=True)
            yield

    def _cache_in_remote(self) -> None:
        """The registry's DVC cache is its remote (same layout, ``files/md5/…``), linked by
        hardlinks: ``dvc add`` moves the staged bytes into the remote once, and the push has
        nothing left to copy. Objects of an import killed before its tag are unreferenced,
        never wrong (content-addressed, written by rename). In ``config.local``: untracked,
        so resetting the registry keeps it."""
        local = self.root / ".dvc" / "config.local"
        if local.is_file():
            return
        from dvc.repo import Repo

        repo = Repo(os.fspath(self.root))
        try:
            with repo.config.edit("local") as conf:
                conf["cache"]["dir"] = os.fspath(self.remote.resolve())
                conf["cache"]["type"] = "hardlink"
        finally:
            repo.close()

    def _back_to_registered(self) -> None:
        """Drop whatever a killed import left: the branch goes back to its newest commit
        that a tag points to (a registered version, or the registry's creation)."""
        peeled = git(self.root, "for-each-ref", "refs/tags",
                     "--format=%(*objectname) %(objectname)")  # fmt: skip
        tagged = {part for line in peeled.splitlines() for part in line.split()}
        for commit in git(self.root, "rev-list", "HEAD").splitlines():
            if commit in tagged:
                git(self.root, "reset", "-q", "--hard", commit)
                break
        git(self.root, "clean", "-q", "-fd")

    def history(self, dataset: str) -> list[dict[str, Any]]:
        path = self.root / "imports" / f"{dataset}.json"
        if not path.is_file():
            return []
        records: list[dict[str, Any]] = json.loads(path.read_text())
        return records

    def sources(self) -> dict[str, str]:
        """dataset -> the connection it was imported from (for visibility)."""
        found: dict[str, str] = {}
        for path in sorted((self.root / "imports").glob("*.json")):
            with contextlib.suppress(ValueError, OSError, KeyError, IndexError, TypeError):
                found[path.stem] = str(json.loads(path.read_text())[-1]["connection"])
        return found

    def next_version(self, dataset: str) -> str:
        records = self.history(dataset)
        if not records:
            return FIRST_VERSION
        major, minor, _ = (int(p) for p in str(records[-1]["version"]).lstrip("v").split("."))
        return f"v{major}.{minor + 1}.0"

    def tracked_md5(self, target: str) -> str | None:
        """The DVC hash of ``target`` as the registry's last commit tracks it."""
        dvc_file = self.root / f"{target}.dvc"
        if not dvc_file.is_file():
            return None
        import yaml

        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
        md5 = outs[0].get("md5")
        return str(md5) if md5 else None

    def publish(
        self,
        dataset: str,
        staged: Path,
        target: str,
        record: dict[str, Any],
        description: str,
        labels: list[str],
    ) -> tuple[str, bool]:
        """Put ``staged`` at ``target`` (``data/NAME`` or ``data/NAME.parquet``), and register
        a version unless its content equals the last one. Under :meth:`locked`.

        Returns the version (new, or the unchanged last one) and whether it is new.
        """
        from dvc.annotations import Artifact
        from dvc.repo import Repo
        from gto.api import register

        previous = self.tracked_md5(target)
        destination = self.root / target
        if destination.is_dir():
            shutil.rmtree(destination)
        elif destination.exists():
            destination.unlink()
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, destination)
        repo = Repo(os.fspath(self.root))
        logging.getLogger("dvc").setLevel(logging.WARNING)
        try:
            with contextlib.chdir(self.root):
                repo.add(target)
                md5 = self.tracked_md5(target)
                history = self.history(dataset)
                if md5 == previous and history:
                    return str(history[-1]["version"]), False  # reset by the next import
                repo.artifacts.add(dataset, Artifact(path=target, type="dataset",
                                                     desc=description, labels=labels))  # fmt: skip
                repo.push()
        finally:
            repo.close()
        version = self.next_version(dataset)
        record = {**record, "version": version, "content_hash": md5}
        imports = self.root / "imports"
        imports.mkdir(exist_ok=True)
        (imports / f"{dataset}.json").write_text(json.dumps([*history, record], indent=1) + "\n")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", f"import {dataset} {version} from "
                                             f"{record['connection']}")  # fmt: skip
        time.sleep(max(0.0, 1.05 - (time.time() % 1)))  # GTO orders tags by whole seconds
        with _identity():
            register(os.fspath(self.root), dataset, "HEAD", version=version)  # the commit point
        return version, True


@contextlib.contextmanager
def _identity() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in GIT_IDENTITY}
    os.environ.update(GIT_IDENTITY)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def import_restrictions(root: Path, connections: Mapping[str, Connection]) -> dict[str, list[str]]:
    """Who may see each imported dataset: its connection's groups (nobody, once the admin
    removed the connection)."""
    if not (root / "imports").is_dir():
        return {}
    sources = ImportRegistry(root).sources()
    return {
        dataset: list(connections[name].groups) if name in connections else []
        for dataset, name in sources.items()
    }
