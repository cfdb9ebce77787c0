"""Writing DVC data registries: publish a dataset version the way DVC and GTO do.

``publish_version`` adds a directory with DVC, declares it in ``dvc.yaml`` ``artifacts:``
(``type: dataset``), pushes it to the registry's DVC remote, commits, and registers the
version as an annotated tag ``NAME@vX.Y.Z`` (what ``gto register`` writes). Used for the
local-mode demo registry and by the tests; admins usually publish with ``dvc``/``gto``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "dsplatform",
    "GIT_AUTHOR_EMAIL": "dsplatform@localhost",
    "GIT_COMMITTER_NAME": "dsplatform",
    "GIT_COMMITTER_EMAIL": "dsplatform@localhost",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def init_registry(root: Path, remote: Path) -> None:
    """A git + DVC repository with a local-directory DVC remote."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    remote.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    repo = Repo.init(os.fspath(root))
    with repo.config.edit() as conf:
        conf["remote"]["storage"] = {"url": os.fspath(remote.resolve())}
        conf["core"]["remote"] = "storage"
    repo.close()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Initialise data registry")


def publish_version(
    root: Path,
    name: str,
    files: Mapping[str, bytes],
    version: str,
    *,
    description: str = "",
    labels: Sequence[str] = (),
) -> str:
    """Replace ``data/NAME`` with ``files``, push, commit and tag ``NAME@version``.

    Returns the tag. Versions must be ``vX.Y.Z``.
    """
    from dvc.annotations import Artifact
    from dvc.repo import Repo

    target = root / "data" / name
    shutil.rmtree(target, ignore_errors=True)
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    repo = Repo(os.fspath(root))
    logging.getLogger("dvc").setLevel(logging.WARNING)  # no "git add" hints on stdout
    try:
        with contextlib.chdir(root):  # DVC resolves these paths against the CWD
            repo.add(f"data/{name}")
            repo.artifacts.add(
                name,
                Artifact(
                    path=f"data/{name}", type="dataset", desc=description, labels=list(labels)
                ),
            )
            repo.push()
    finally:
        repo.close()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"{name} {version}")
    tag = f"{name}@{version}"
    # GTO orders versions by tag time with one-second resolution
    time.sleep(max(0.0, 1.05 - (time.time() % 1)))
    git(root, "tag", "-a", tag, "-m", f"Registering artifact {name} version {version}")
    return tag
