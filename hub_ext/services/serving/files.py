"""A served version's files on the catalog's side: downloaded once from MLflow's artifact
store (nothing of the model runs in doing so), kept under a name that no model name can
steer (a hash), and packed for the serving manager when workers run elsewhere."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path


def model_key(name: str, version: str) -> str:
    """A file-name-safe key of (model, version): ``m-<sha256(name)[:16]>-v<version>``."""
    return f"m-{hashlib.sha256(name.encode()).hexdigest()[:16]}-v{int(version)}"


class ModelFiles:
    """Downloaded model versions under ``root`` (one directory per key, complete or absent)."""

    def __init__(self, root: Path, tracking_uri: str) -> None:
        self.root = root
        self.tracking_uri = tracking_uri
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._lock = threading.Lock()

    def path(self, name: str, version: str) -> Path:
        return self.root / model_key(name, version)

    def ensure(self, name: str, version: str) -> Path:
        """The version's model directory (with its MLmodel), downloaded if not here yet."""
        target = self.path(name, version)
        if (target / "MLmodel").is_file():
            return target
        from mlflow.artifacts import download_artifacts

        with self._lock:  # one download per version at a time
            if (target / "MLmodel").is_file():
                return target
            staging = Path(tempfile.mkdtemp(prefix=".download-", dir=self.root))
            try:
                got = Path(
                    download_artifacts(
                        artifact_uri=f"models:/{name}/{version}",
                        dst_path=str(staging),
                        tracking_uri=self.tracking_uri,
                        registry_uri=self.tracking_uri,
                    )
                )
                if not (got / "MLmodel").is_file():
                    raise FileNotFoundError(f"version {version} of {name!r} has no MLmodel file")
                shutil.rmtree(target, ignore_errors=True)
                os.rename(got, target)  # complete or absent
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return target


def pack(model_dir: Path) -> bytes:
    """The model directory as a gzipped tar (for the serving manager)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(model_dir), arcname=".")
    return buffer.getvalue()


def safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's files and directories, or TarError for anything else: links, devices,
    absolute names or ``..`` (Python 3.11.2 has no extraction filters)."""
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"refused archive member {member.name[:100]!r}")
        member.mode = 0o755 if member.isdir() else 0o644
        member.uid = member.gid = 0
    return members


def unpack(data: bytes, target: Path) -> Path:
    """Extract a packed model into ``target`` atomically; members that would leave it, links
    and device files are refused (:func:`safe_members`)."""
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(staging, members=safe_members(tar))  # each member checked
        if not (staging / "MLmodel").is_file():
            raise ValueError("the upload has no MLmodel file")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
