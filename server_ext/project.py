"""The user's project: a git repository with DVC, initialised on first use.

Git is driven through its CLI (the porcelain users know); DVC through its Python API.
Guards keep what must not be in git out of it: secrets of the running sandbox (hub and
MLflow tokens), key files, and large files that belong in DVC (``--outputs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import DsdataError, InvalidReference

# What a sandbox home holds that is not the project.
DEFAULT_GITIGNORE = """\
# dsplatform: not part of the project
/.local/
/.cache/
/.config/
/.ipython/
/.jupyter/
/.npm/
/.conda/
/.tmp/
.ipynb_checkpoints/
__pycache__/
# datasets come from registries (see .dsdata/lineage.json), not git
/data/
/reproduce/
.dsdata/state/
.dsdata/queue/
.dsdata/*.lock
"""

SECRET_ENV = ("JUPYTERHUB_API_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "JPY_API_TOKEN", "AWS_SECRET_ACCESS_KEY")  # fmt: skip
SECRET_NAMES = (".env", "id_rsa", "id_ed25519", ".netrc", ".git-credentials")
SECRET_SUFFIXES = (".pem", ".key", ".p12")
MAX_GIT_FILE = 20 * 1024 * 1024

IDENTITY = {
    "GIT_AUTHOR_NAME": os.environ.get("JUPYTERHUB_USER", "dsplatform"),
    "GIT_AUTHOR_EMAIL": f"{os.environ.get('JUPYTERHUB_USER', 'dsplatform')}@dsplatform.local",
}


class GitError(DsdataError):
    status = 500


def git(root: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ}
    for key, value in IDENTITY.items():
        env.setdefault(key, value)
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    proc = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


@contextlib.contextmanager
def quiet_dvc() -> Iterator[None]:
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class Project:
    """A project directory under git and DVC."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self, dvc_remote: str | None) -> None:
        """``git init`` and ``dvc init`` if absent; the platform's DVC remote as default."""
        if not (self.root / ".git").exists():
            git(self.root, "init", "-q", "-b", "main")
            gitignore = self.root / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text(DEFAULT_GITIGNORE)
        from dvc.repo import Repo

        with quiet_dvc():
            if not (self.root / ".dvc").exists():
                Repo.init(os.fspath(self.root))
            if dvc_remote:
                repo = Repo(os.fspath(self.root))
                try:
                    with repo.config.edit() as conf:
                        if not conf["core"].get("remote"):
                            conf["remote"]["platform"] = {"url": dvc_remote}
                            conf["core"]["remote"] = "platform"
                finally:
                    repo.close()

    def head(self) -> str | None:
        out = git(self.root, "rev-parse", "--verify", "-q", "HEAD", check=False)
        return out or None

    def resolve_outputs(self, outputs: Sequence[str]) -> list[str]:
        """Outputs as project-relative paths; each must exist inside the project."""
        targets = []
        for output in outputs:
            path = (self.root / output).resolve()
            if self.root not in path.parents:
                raise InvalidReference(f"Output {output!r} is outside the project {self.root}")
            if not path.exists():
                raise InvalidReference(f"Output {output!r} does not exist")
            targets.append(path.relative_to(self.root).as_posix())
        return targets

    def dvc_add(self, outputs: Sequence[str]) -> dict[str, str]:
        """``dvc add`` each output; return path -> md5 of what was recorded."""
        from dvc.repo import Repo

        if not outputs:
            return {}
        targets = [os.fspath(self.root / t) for t in self.resolve_outputs(outputs)]
        hashes: dict[str, str] = {}
        # absolute paths: no chdir, which would move every thread of a jupyter-server
        with quiet_dvc():
            repo = Repo(os.fspath(self.root))
            try:
                stages = repo.add(targets)
                for stage in stages:
                    for out in stage.outs:  # def_path is relative to the .dvc file's dir
                        rel = Path(out.fs_path).relative_to(self.root).as_posix()
                        hashes[rel] = out.hash_info.value
            finally:
                repo.close()
        return hashes

    def dvc_push(self, targets: Sequence[str]) -> int:
        from dvc.repo import Repo

        if not targets:
            return 0
        with quiet_dvc():
            repo = Repo(os.fspath(self.root))
            try:
                return int(repo.push(targets=[os.fspath(self.root / f"{t}.dvc") for t in targets]))
            finally:
                repo.close()

    def stage_all(self) -> list[str]:
        """``git add -A`` after the secret and size guards; the staged paths."""
        git(self.root, "add", "-A")
        staged = [
            p for p in git(self.root, "diff", "--cached", "--name-only", "-z").split("\0") if p
        ]
        self._guard(staged)
        return staged

    def check_pending(self, outputs: Sequence[str]) -> None:
        """Run the guards on what ``git add -A`` would take, before anything changes.

        Files under ``outputs`` are skipped: they go to DVC, not git.
        """
        listed = git(self.root, "ls-files", "-m", "-o", "--exclude-standard", "-z")
        prefixes = tuple(o.rstrip("/") + "/" for o in outputs)
        pending = [
            p for p in listed.split("\0")
            if p and p not in {o.rstrip("/") for o in outputs} and not p.startswith(prefixes)
        ]  # fmt: skip
        self._guard(pending, reset=False)

    def _guard(self, staged: Sequence[str], reset: bool = True) -> None:
        secrets = [os.environ[k] for k in SECRET_ENV if len(os.environ.get(k, "")) >= 8]
        problems = []
        for rel in staged:
            path = self.root / rel
            name = path.name
            if name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES):
                problems.append(f"{rel} looks like a credential file")
                continue
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size > MAX_GIT_FILE:
                problems.append(
                    f"{rel} is {size // 2**20} MiB: track it with --outputs (DVC) or .gitignore"
                )
                continue
            if secrets:
                data = path.read_bytes()
                if any(s.encode() in data for s in secrets):
                    problems.append(f"{rel} contains a token of this sandbox")
        if problems:
            if reset:
                git(self.root, "reset", "-q", check=False)
            raise InvalidReference("Nothing was committed: " + "; ".join(problems))

    def commit(self, message: str) -> str:
        git(self.root, "commit", "-q", "-m", message)
        return git(self.root, "rev-parse", "HEAD")

    def has_changes(self) -> bool:
        return bool(git(self.root, "status", "--porcelain"))
