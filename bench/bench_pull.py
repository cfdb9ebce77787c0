"""Dataset pull: ``server_ext.core.DataService.pull`` against `dvc get` and `cp -r`, same data.

One DVC data registry (``hub_ext.datasets.publish.init_registry`` + ``publish_version``, a
local-directory DVC remote) holds two datasets of ``--size-mb`` (default 1024 MiB) of random
bytes each: ``many`` as ``--files`` (default 1,000) files in 10 sub-directories, ``one`` as a
single file; both released as ``v1.0.0``. The registry's own ``.dvc/cache`` is removed after
publishing, so every copy comes from the remote. ``DVC_SITE_CACHE_DIR`` points at a temp dir.

1. **Cold pull**, per dataset, ``--rounds`` (default 3) rounds; the order of the three methods
   rotates each round, and ``sync`` runs (untimed) before each so no method flushes another's
   dirty pages. Nothing is dropped from the page cache (a benchmark cannot), so the remote is
   probably in memory for everyone.
   - ``pull``: a new, empty shared cache and a new workspace each time:
     ``DataService(root=ws, cache_dir=cache, catalog=RegistryCatalog([registry], cache))
     .pull("NAME@v1.0.0")``, in this process, with DVC already imported (as in a kernel after
     its first pull) and ``server_ext.registry``'s description memo cleared (as in a new
     kernel).
   - ``dvc get``: ``.venv/bin/dvc get REGISTRY data/NAME -o OUT --rev NAME@v1.0.0`` (what a user
     would otherwise run; includes the CLI's start-up).
   - ``cp -r`` of the registry's working copy of ``data/NAME``.
   Medians and the ratios pull/dvc-get (goal <= 1.0) and pull/cp (goal <= 1.3).
2. **Warm re-pull**: the same version into a new workspace with the cache complete, vs the
   cold pull (goal <= 0.05x). As root this materialises copies (see below); the non-root
   figure comes from step 4.
3. **10 users as root** (this machine's local mode): one shared cache, 10 workspaces, each
   user's pull in turn. Bytes on disk of the cache + all workspaces (``st_blocks``, hardlinked
   inodes counted once, symlinks ~0) over the bytes of one copy (goal 1.0x).
4. **10 users as their own uids** (the deployment case): a new shared cache populated by one
   root pull (that workspace is then removed and not counted), cache root and ``locks/``
   chmod 1777; then each user pulls in a subprocess that drops to uid/gid ``--uid-base``+i
   (``setgroups([])``, ``setgid``, ``setuid``) with its own ``HOME`` (a ``.gitconfig`` with
   ``safe.directory = *``, as the registry's git repo belongs to root) and a workspace it
   owns. The venv's interpreter lives under ``/root`` (mode 0700 here), so the users run a
   hard-linked copy of the same interpreter from the temp dir, with the venv's site-packages
   added. Permission problems on the way (and the fix applied to go on) are recorded.

Which materialisation a pull used is ``PullResult.links``: ``server_ext.workspace.link_types``
never hardlinks or symlinks for root (root could write the shared object through the link),
so as root every pull copies; a non-root user who does not own the objects gets links.

    .venv/bin/python -m bench.bench_pull [--size-mb 1024] [--files 1000] [--rounds 3]
        [--users 10] [--no-profile] [--keep]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .common import (
    REPO,
    OtherLoad,
    contention_note,
    cpu_contention,
    log,
    machine_info,
    table,
    write_result,
)

NAME = "bench_pull"
GOALS = {"pull_vs_dvc_get": 1.0, "pull_vs_cp": 1.3, "warm_vs_cold": 0.05, "disk_ratio": 1.0}
VENV = REPO / ".venv"
DVC = VENV / "bin" / "dvc"
VERSION = "v1.0.0"
MIB = 1 << 20


# --- data ----------------------------------------------------------------------------------
class GeneratedFiles(Mapping[str, bytes]):
    """relpath -> random bytes, generated on access (one file in memory at a time)."""

    def __init__(self, sizes: dict[str, int], seed: int) -> None:
        self.sizes = sizes
        self.seed = seed

    def __getitem__(self, rel: str) -> bytes:
        size = self.sizes[rel]
        rng = random.Random(f"{self.seed}:{rel}")
        buf = bytearray(size)
        view = memoryview(buf)
        for offset in range(0, size, MIB):
            n = min(MIB, size - offset)
            view[offset : offset + n] = rng.randbytes(n)
        return buf  # type: ignore[return-value]  # bytes-like; write_bytes takes it

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def layouts(size: int, files: int) -> dict[str, dict[str, int]]:
    each, extra = divmod(size, files)
    many = {
        f"shard-{i * 10 // files:02d}/part-{i:05d}.bin": each + (1 if i < extra else 0)
        for i in range(files)
    }
    return {"many": many, "one": {"data.bin": size}}


def build_registry(base: Path, size: int, files: int) -> tuple[Path, dict[str, Any]]:
    from hub_ext.datasets.publish import init_registry, publish_version

    registry, remote = base / "registry", base / "remote"
    init_registry(registry, remote)
    info = {}
    for seed, (name, sizes) in enumerate(layouts(size, files).items()):
        t0 = time.perf_counter()
        publish_version(
            registry, name, GeneratedFiles(sizes, seed), VERSION, description=f"bench {name}"
        )
        info[name] = {
            "files": len(sizes),
            "bytes": sum(sizes.values()),
            "publish_s": round(time.perf_counter() - t0, 1),
        }
    shutil.rmtree(registry / ".dvc" / "cache", ignore_errors=True)
    return registry, info


# --- measuring -----------------------------------------------------------------------------
def tree_stats(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``, symlinks followed."""
    n = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            total += os.stat(os.path.join(dirpath, name)).st_size
    return n, total


def disk_usage(*roots: Path) -> dict[str, int]:
    """Bytes on disk under ``roots`` (st_blocks), each inode once; symlinks are their own size."""
    seen: set[tuple[int, int]] = set()
    out = {
        "bytes": 0,
        "file_bytes": 0,
        "files": 0,
        "symlinks": 0,
        "symlink_bytes": 0,
        "hardlinked_dupes": 0,
    }
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            for name in [*dirs, *names]:
                st = os.lstat(os.path.join(dirpath, name))
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    out["hardlinked_dupes"] += 1
                    continue
                seen.add(key)
                out["bytes"] += st.st_blocks * 512
                if os.path.islink(os.path.join(dirpath, name)):
                    out["symlinks"] += 1
                    out["symlink_bytes"] += st.st_blocks * 512
                elif name in names:
                    out["files"] += 1
                    out["file_bytes"] += st.st_blocks * 512
    return out


def clear_describe_memo() -> None:
    from server_ext import registry

    registry._described.clear()


def dvc_env(site: Path) -> dict[str, str]:
    return {**os.environ, "DVC_SITE_CACHE_DIR": os.fspath(site), "DVC_NO_ANALYTICS": "1"}


def rm(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    os.sync()  # flush what the previous method wrote, untimed
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t0, value


def pull(registry: Path, cache: Path, ws: Path, ref: str) -> Any:
    from server_ext.catalog import RegistryCatalog
    from server_ext.core import DataService

    clear_describe_memo()
    ws.mkdir(parents=True, exist_ok=True)
    service = DataService(root=ws, cache_dir=cache, catalog=RegistryCatalog([str(registry)], cache))
    return service.pull(ref)


def check_tree(root: Path, expect: dict[str, int], what: str) -> None:
    files, total = tree_stats(root)
    if (files, total) != (expect["files"], expect["bytes"]):
        raise SystemExit(
            f"{what}: {files} files / {total} bytes, expected {expect['files']} / {expect['bytes']}"
        )


# --- 1 + 2: cold and warm ------------------------------------------------------------------
def cold_and_warm(
    name: str, registry: Path, work: Path, site: Path, expect: dict[str, int], rounds: int
) -> dict[str, Any]:
    ref = f"{name}@{VERSION}"
    methods = ["pull", "dvc_get", "cp"]
    times: dict[str, list[float]] = {m: [] for m in methods}
    links: list[dict[str, int]] = []
    orders = []
    for r in range(rounds):
        order = methods[r % 3 :] + methods[: r % 3]
        orders.append(order)
        for method in order:
            out = work / f"{name}-{method}-{r}"
            if method == "pull":
                cache = work / f"{name}-cache-{r}"
                seconds, result = timed(pull, registry, cache, out, ref)
                assert not result.from_cache and result.downloaded_objects >= expect["files"]
                links.append(result.links)
                check_tree(out / "data" / name, expect, f"pull {name}")
                rm(out, cache)
            elif method == "dvc_get":
                cmd = [
                    os.fspath(DVC),
                    "get",
                    os.fspath(registry),
                    f"data/{name}",
                    "-o",
                    os.fspath(out),
                    "--rev",
                    ref,
                ]
                seconds, proc = timed(
                    subprocess.run, cmd, env=dvc_env(site), capture_output=True, text=True
                )
                if proc.returncode:
                    raise SystemExit(f"dvc get failed: {proc.stderr}")
                check_tree(out, expect, f"dvc get {name}")
                rm(out)
            else:
                src = registry / "data" / name
                seconds, proc = timed(subprocess.run, ["cp", "-r", src, out], check=True)
                check_tree(out, expect, f"cp {name}")
                rm(out)
            times[method].append(seconds)
            log(f"  {name} round {r + 1}: {method:8s} {seconds:6.2f} s")
    # warm: the cache complete, a new workspace each time
    cache = work / f"{name}-warm-cache"
    pull(registry, cache, work / f"{name}-warm-seed", ref)
    rm(work / f"{name}-warm-seed")
    warm: list[float] = []
    warm_links: list[dict[str, int]] = []
    for r in range(rounds):
        ws = work / f"{name}-warm-{r}"
        seconds, result = timed(pull, registry, cache, ws, ref)
        assert result.from_cache and result.downloaded_objects == 0
        warm.append(seconds)
        warm_links.append(result.links)
        rm(ws)
        log(f"  {name} warm re-pull {r + 1}: {seconds:6.2f} s ({result.links})")
    rm(cache)
    med = {m: statistics.median(v) for m, v in times.items()}
    return {
        "dataset": name,
        "files": expect["files"],
        "bytes": expect["bytes"],
        "orders": orders,
        "seconds": times,
        "median_s": med,
        "pull_links": links,
        "ratio_pull_vs_dvc_get": med["pull"] / med["dvc_get"],
        "ratio_pull_vs_cp": med["pull"] / med["cp"],
        "warm_s": warm,
        "warm_median_s": statistics.median(warm),
        "warm_links": warm_links,
        "ratio_warm_vs_cold": statistics.median(warm) / med["pull"],
        "throughput_mib_s": {m: expect["bytes"] / MIB / s for m, s in med.items()},
    }


# --- 3: ten users as root ------------------------------------------------------------------
def users_as_root(
    name: str, registry: Path, work: Path, users: int, one_copy: int
) -> dict[str, Any]:
    cache = work / "root-users-cache"
    ref = f"{name}@{VERSION}"
    workspaces = [work / f"root-user-{i}" for i in range(users)]
    seconds, links = [], []
    for ws in workspaces:
        s, result = timed(pull, registry, cache, ws, ref)
        seconds.append(s)
        links.append(result.links)
    usage = disk_usage(cache, *workspaces)
    rm(cache, *workspaces)
    return {
        "users": users,
        "seconds": seconds,
        "first_pull_downloads": True,
        "links": links,
        "disk": usage,
        "disk_ratio": usage["bytes"] / one_copy,
        "disk_ratio_files": usage["file_bytes"] / one_copy,
    }


# --- 4: ten users as their own uids --------------------------------------------------------
CHILD = r"""
import json, os, site, sys, time, traceback
site.addsitedir(sys.argv[5])
from pathlib import Path
import dvc.repo, dvc_data.hashfile.transfer, dvc_objects.fs.system  # imported, as in a kernel
from server_ext.catalog import RegistryCatalog
from server_ext.core import DataService
cache, ws, registry, ref = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
warm_cache = Path(sys.argv[6])
def pull(root, cache):
    from server_ext import registry as reg
    reg._described.clear()  # as in a new kernel
    service = DataService(root=root, cache_dir=cache, catalog=RegistryCatalog([registry], cache))
    return service.pull(ref)
out = {}
try:
    # the first pull of this process pays DVC's lazy imports: from a complete cache into a
    # scratch workspace, untimed
    t0 = time.perf_counter()
    pull(Path(os.environ["HOME"]) / "scratch", warm_cache)
    out["first_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = pull(ws, cache)
    out.update({"ok": True, "links": r.links, "from_cache": r.from_cache,
                "downloaded": r.downloaded_objects})
except BaseException as e:
    out.update({"ok": False, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()[-2000:]})
out["seconds"] = time.perf_counter() - t0
out["uid"] = os.getuid()
print(json.dumps(out))
"""


def private_interpreter(base: Path) -> tuple[Path, dict[str, str]]:
    """A hard-linked copy of the venv's interpreter outside /root (which is 0700 here)."""
    real = Path(os.path.realpath(VENV / "bin" / "python"))
    prefix = real.parent.parent
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    dest = base / "pyrt"
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()

    def link_tree(src: Path, dst: Path) -> None:
        shutil.copytree(
            src, dst, copy_function=os.link, ignore=shutil.ignore_patterns("site-packages")
        )

    os.link(real, dest / "bin" / real.name)
    for lib in (prefix / "lib").glob("libpython*.so*"):
        os.link(lib, dest / "lib" / lib.name, follow_symlinks=False)
    link_tree(prefix / "lib" / ver, dest / "lib" / ver)
    env = {"LD_LIBRARY_PATH": os.fspath(dest / "lib")}
    return dest / "bin" / real.name, env


def site_packages() -> Path:
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return VENV / "lib" / ver / "site-packages"


class UidRunner:
    """Runs the pull of one user in a subprocess as that user's uid/gid."""

    def __init__(self, base: Path, work: Path, registry: Path) -> None:
        self.python, self.py_env = private_interpreter(base)
        self.homes = base / "homes"
        self.homes.mkdir(mode=0o755)
        self.work, self.registry = work, registry
        self.fixes: list[str] = []
        self.problems: list[dict[str, Any]] = []

    def home(self, uid: int) -> Path:
        home = self.homes / str(uid)
        if not home.exists():
            home.mkdir()
            (home / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
            (home / "dvc-site").mkdir()
            (home / "scratch").mkdir()
            for p in (home, home / ".gitconfig", home / "dvc-site", home / "scratch"):
                os.chown(p, uid, uid)
        return home

    def workspace(self, uid: int, label: str) -> Path:
        ws = self.work / f"uid-{label}-{uid}"
        ws.mkdir()
        os.chown(ws, uid, uid)
        return ws

    def pull(self, uid: int, cache: Path, ws: Path, ref: str, warm_cache: Path) -> dict[str, Any]:
        """Pull ``ref`` into ``ws`` as ``uid``, after an untimed pull from ``warm_cache``."""
        home = self.home(uid)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": os.fspath(home),
            "USER": f"user{uid}",  # the uids have no passwd entry; DVC asks getpass.getuser()
            "LOGNAME": f"user{uid}",
            "LANG": "C.UTF-8",
            "DVC_SITE_CACHE_DIR": os.fspath(home / "dvc-site"),
            "DVC_NO_ANALYTICS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.py_env,
        }

        def drop() -> None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        cmd = [
            os.fspath(self.python),
            "-c",
            CHILD,
            os.fspath(cache),
            os.fspath(ws),
            os.fspath(self.registry),
            ref,
            os.fspath(site_packages()),
            os.fspath(warm_cache),
        ]
        for attempt in range(3):
            shutil.rmtree(home / "scratch" / "data", ignore_errors=True)
            os.sync()
            t_start = time.perf_counter()
            proc = subprocess.run(
                cmd, env=env, cwd="/", preexec_fn=drop, capture_output=True, text=True
            )
            wall = time.perf_counter() - t_start
            try:
                out = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                out = {"ok": False, "error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
            out["wall_s"] = wall
            if out["ok"]:
                return out
            self.problems.append(
                {
                    "uid": uid,
                    "attempt": attempt,
                    "error": out["error"],
                    "traceback": out.get("traceback", ""),
                }
            )
            log(f"  uid {uid}: {out['error']}")
            fix = fix_permission(out, cache, warm_cache)
            if fix is None:
                break
            self.fixes.append(fix)
            log(f"  applied: {fix}")
        return out


def shared_cache_dir(path: Path) -> Path:
    """An empty shared cache root as an admin would create it: world-writable, sticky."""
    path.mkdir()
    os.chmod(path, 0o1777)
    return path


def users_non_root(
    name: str,
    registry: Path,
    work: Path,
    base: Path,
    users: int,
    uid_base: int,
    one_copy: int,
    rounds: int,
) -> dict[str, Any]:
    ref = f"{name}@{VERSION}"
    cache = shared_cache_dir(work / "uid-users-cache")
    seed_ws = work / "uid-seed"
    t0 = time.perf_counter()
    pull(registry, cache, seed_ws, ref)
    seed_s = time.perf_counter() - t0
    rm(seed_ws)
    obj_modes = sorted(
        {oct(p.stat().st_mode & 0o7777) for p in (cache / "files").rglob("*") if p.is_file()}
    )
    os.chmod(cache / "locks", 0o1777)
    runner = UidRunner(base, work, registry)
    results: list[dict[str, Any]] = []
    workspaces = []
    for i in range(users):
        uid = uid_base + i
        ws = runner.workspace(uid, "user")
        workspaces.append(ws)
        out = runner.pull(uid, cache, ws, ref, cache)
        results.append(out)
        log(
            f"  uid {uid}: {out.get('links')} in {out['seconds']:.2f} s "
            f"(process {out['wall_s']:.2f} s)"
        )
    usage = disk_usage(cache, *workspaces)
    rm(*workspaces)
    # the deployment's first puller: a non-root user downloads into an empty shared cache
    cold_uid = uid_base + users
    cold: list[dict[str, Any]] = []
    for r in range(rounds):
        fresh = shared_cache_dir(work / f"uid-cold-cache-{r}")
        ws = runner.workspace(cold_uid, f"cold{r}")
        out = runner.pull(cold_uid, fresh, ws, ref, cache)
        cold.append(out)
        log(f"  cold pull as uid {cold_uid}: {out.get('links')} in {out['seconds']:.2f} s")
        rm(ws, fresh)
    rm(cache, runner.homes)
    ok = [r for r in results if r["ok"]]
    cold_ok = [r for r in cold if r["ok"]]
    return {
        "users": users,
        "uids": [uid_base + i for i in range(users)],
        "seed_pull_s": seed_s,
        "cache_object_modes": obj_modes,
        "results": results,
        "ok": len(ok),
        "links": [r.get("links") for r in results],
        "pull_seconds": [r["seconds"] for r in ok],
        "pull_median_s": statistics.median([r["seconds"] for r in ok]) if ok else None,
        "first_pull_median_s": statistics.median([r["first_seconds"] for r in ok]) if ok else None,
        "process_median_s": statistics.median([r["wall_s"] for r in ok]) if ok else None,
        "permission_problems": runner.problems,
        "fixes_applied": runner.fixes,
        "disk": usage,
        "disk_ratio": usage["bytes"] / one_copy,
        "disk_ratio_files": usage["file_bytes"] / one_copy,
        "cold_uid": cold_uid,
        "cold": cold,
        "cold_links": [r.get("links") for r in cold],
        "cold_seconds": [r["seconds"] for r in cold_ok],
        "cold_median_s": statistics.median([r["seconds"] for r in cold_ok]) if cold_ok else None,
    }


def fix_permission(out: dict[str, Any], *caches: Path) -> str | None:
    """What an admin would do about a permission error in the shared cache, once each."""
    err = out.get("error", "")
    if "Permission" not in err and "EACCES" not in err:
        return None
    cache = next((c for c in caches if str(c) in err), caches[0])
    locks = list((cache / "locks").glob("*.lock"))
    if "locks" in err and any(p.stat().st_mode & 0o777 != 0o666 for p in locks):
        for p in locks:
            os.chmod(p, 0o666)
        return (
            "chmod 0666 cache/locks/*.lock (SharedCache.lock creates the lock file with the "
            "creator's umask, 0644 for root, and other users cannot open it O_RDWR)"
        )
    site = cache / "site"
    if str(site) in err or "site" in err:
        for dirpath, dirs, names in os.walk(site):
            for n in [*dirs, *names]:
                p = Path(dirpath, n)
                os.chmod(p, 0o1777 if p.is_dir() else 0o666)
        os.chmod(site, 0o1777)
        return "chmod -R a+rwX,+t cache/site (DVC site cache written by the root pull)"
    return None


# --- profile -------------------------------------------------------------------------------
def profile_cold(name: str, registry: Path, work: Path) -> dict[str, Any]:
    cache, ws = work / "prof-cache", work / "prof-ws"
    prof = cProfile.Profile()
    os.sync()
    t0 = time.perf_counter()
    prof.enable()
    pull(registry, cache, ws, f"{name}@{VERSION}")
    prof.disable()
    total = time.perf_counter() - t0
    rm(cache, ws)
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(file)}:{line}({func})",
                "ncalls": nc,
                "tottime": round(tt, 3),
                "cumtime": round(ct, 3),
            }
        )
    by_cum = sorted(rows, key=lambda r: -r["cumtime"])[:25]
    by_tot = sorted(rows, key=lambda r: -r["tottime"])[:12]
    return {"dataset": name, "seconds": total, "top_cumulative": by_cum, "top_tottime": by_tot}


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(REPO) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# --- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="MiB per dataset")
    parser.add_argument("--files", type=int, default=1000, help="files of the 'many' dataset")
    parser.add_argument("--rounds", type=int, default=3, help="cold (and warm) rounds each")
    parser.add_argument("--users", type=int, default=10, help="users sharing one cache")
    parser.add_argument("--uid-base", type=int, default=20001, help="first non-root uid/gid")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile'd pull")
    parser.add_argument("--no-users", action="store_true", help="skip steps 3 and 4")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    contention = cpu_contention()
    log(f"{NAME}: {args.size_mb} MiB per dataset; CPU busy before: {contention['busy_fraction']}")
    base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.workdir))
    os.chmod(base, 0o755)  # the non-root users must reach the registry and the cache
    site = base / "dvc-site"
    site.mkdir(mode=0o1777)
    os.chmod(site, 0o1777)
    os.environ["DVC_SITE_CACHE_DIR"] = os.fspath(site)
    os.environ["DVC_NO_ANALYTICS"] = "1"
    work = base / "work"
    work.mkdir()
    os.chmod(work, 0o755)
    result: dict[str, Any] = {"name": NAME}
    try:
        import dvc.repo  # noqa: F401  # imports paid once, as in a kernel
        import dvc_data.hashfile.transfer  # noqa: F401

        log("building the registry ...")
        t0 = time.perf_counter()
        registry, datasets = build_registry(base, args.size_mb * MIB, args.files)
        log(f"  built in {time.perf_counter() - t0:.0f} s: {datasets}")
        one_copy = {
            n: disk_usage(registry / "data" / n)["file_bytes"] for n in datasets
        }  # the bytes on disk of one plain copy's files
        cli = [timed(subprocess.run, [DVC, "--version"], capture_output=True)[0] for _ in range(3)]
        dvc_help = [
            timed(subprocess.run, [DVC, "get", "--help"], capture_output=True)[0] for _ in range(3)
        ]
        load = OtherLoad()
        cold = {}
        for name in datasets:
            log(f"cold pulls of {name!r} ({datasets[name]['files']} files):")
            cold[name] = cold_and_warm(name, registry, work, site, datasets[name], args.rounds)
        root_users = uid_users = None
        if not args.no_users:
            log(f"{args.users} users as root:")
            root_users = users_as_root("many", registry, work, args.users, one_copy["many"])
            if os.geteuid() == 0:
                log(f"{args.users} users as uids {args.uid_base}..:")
                uid_users = users_non_root(
                    "many",
                    registry,
                    work,
                    base,
                    args.users,
                    args.uid_base,
                    one_copy["many"],
                    args.rounds,
                )
            else:
                log("not root: cannot switch uids, skipping the non-root users")
        during = load.stop()
        profile = None
        if not args.no_profile:
            log("profiling one cold pull of 'many' ...")
            profile = profile_cold("many", registry, work)
    finally:
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    result.update(
        {
            "machine": {**machine_info(["server_ext", "hub_ext"]), "dvc": _dvc_version()},
            "contention_before": contention,
            "contention_during": during,
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "datasets": datasets,
            "one_copy_bytes": one_copy,
            "dvc_cli_startup_s": {
                "version": statistics.median(cli),
                "get_help": statistics.median(dvc_help),
            },
            "cold": cold,
            "root_users": root_users,
            "uid_users": uid_users,
            "profile": profile,
            "goal": GOALS,
            "runtime_s": round(time.perf_counter() - started, 1),
        }
    )
    result["meets_goal"] = _goals(result)
    path = write_result(NAME, result)
    print(render(result))
    note = contention_note(contention, during)
    if note:
        print(f"\nNOTE: {note}")
    print(f"\nwrote {path} ({result['runtime_s']:.0f} s)")
    return result


def _dvc_version() -> str | None:
    from importlib.metadata import version

    return version("dvc")


def _goals(r: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for name, c in r["cold"].items():
        out[f"{name}_pull_vs_dvc_get"] = c["ratio_pull_vs_dvc_get"] <= GOALS["pull_vs_dvc_get"]
        out[f"{name}_pull_vs_cp"] = c["ratio_pull_vs_cp"] <= GOALS["pull_vs_cp"]
        out[f"{name}_warm_vs_cold_root"] = c["ratio_warm_vs_cold"] <= GOALS["warm_vs_cold"]
    if r["root_users"]:
        out["disk_ratio_root"] = r["root_users"]["disk_ratio"] <= GOALS["disk_ratio"] + 0.05
    u = r["uid_users"]
    if u and u["pull_median_s"] is not None:
        out["disk_ratio_uids"] = u["disk_ratio"] <= GOALS["disk_ratio"] + 0.05
        out["warm_vs_cold_uids"] = (
            u["pull_median_s"] / r["cold"]["many"]["median_s"]["pull"] <= GOALS["warm_vs_cold"]
        )
    return out


def _links(links: dict[str, int] | None) -> str:
    if not links:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(links.items()))


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _each(pulls: list[dict[str, int] | None]) -> str:
    """The link kinds of each pull, e.g. ``copy 1000 (x3)``."""
    kinds = [_links(p) for p in pulls]
    return "; ".join(f"{k} (x{kinds.count(k)})" for k in sorted(set(kinds)))


def render(r: dict[str, Any]) -> str:
    g = r["goal"]
    rows = []
    for name, c in r["cold"].items():
        m = c["median_s"]
        label = f"{name} ({c['files']} files, {c['bytes'] / MIB:.0f} MiB)"
        rows.append(
            [
                f"cold {label}",
                *(_spread(c["seconds"][k]) for k in ("pull", "dvc_get", "cp")),
                f"{c['ratio_pull_vs_dvc_get']:.2f} (<= {g['pull_vs_dvc_get']})",
                f"{c['ratio_pull_vs_cp']:.2f} (<= {g['pull_vs_cp']})",
                _each(c["pull_links"]),
            ]
        )
    u = r["uid_users"]
    if u and u.get("cold_median_s") is not None:
        m = r["cold"]["many"]["median_s"]
        rows.append(
            [
                f"cold many as uid {u['cold_uid']} *",
                _spread(u["cold_seconds"]),
                "",
                "",
                f"{u['cold_median_s'] / m['dvc_get']:.2f}",
                f"{u['cold_median_s'] / m['cp']:.2f}",
                _each(u["cold_links"]),
            ]
        )
    text = table(
        [
            "cold pull",
            "pull s",
            "dvc get s",
            "cp -r s",
            "pull/dvc get",
            "pull/cp",
            "pull materialised",
        ],
        rows,
    )
    text += "\nmedian (min-max) of the rounds; pull = DataService.pull as root (this machine's local mode)"
    if u and u.get("cold_median_s") is not None:
        text += (
            "\n* a non-root user downloading into an empty shared cache (the deployment's first "
            "puller), timed\n  in separate rounds after the others, ratios against the medians above"
        )
    rows = []
    for name, c in r["cold"].items():
        rows.append(
            [
                f"root re-pull {name}",
                c["warm_median_s"],
                c["median_s"]["pull"],
                f"{c['ratio_warm_vs_cold']:.3f} (<= {g['warm_vs_cold']})",
                _each(c["warm_links"]),
            ]
        )
    if u and u["pull_median_s"] is not None:
        cold = r["cold"]["many"]["median_s"]["pull"]
        rows.append(
            [
                f"uid re-pull many ({u['ok']} users)",
                u["pull_median_s"],
                cold,
                f"{u['pull_median_s'] / cold:.3f} (<= {g['warm_vs_cold']})",
                _each(u["links"]),
            ]
        )
        rows.append(
            [
                "  same, first pull of the process",
                u["first_pull_median_s"],
                cold,
                f"{u['first_pull_median_s'] / cold:.3f}",
                "(into a scratch dir)",
            ]
        )
    text += "\n\n" + table(["warm re-pull", "median s", "cold pull s", "warm/cold", "links"], rows)
    rows = []
    for label, d in (("as root", r["root_users"]), ("as own uids", r["uid_users"])):
        if not d:
            continue
        rows.append(
            [
                f"{d['users']} users {label}",
                f"{d['disk']['bytes'] / MIB:.0f} MiB",
                f"{d['disk_ratio']:.3f}x (goal {g['disk_ratio']}x)",
                f"{d['disk_ratio_files']:.3f}x",
                _each(d["links"]),
            ]
        )
    if rows:
        text += "\n\n" + table(
            [
                "shared cache",
                "cache + workspaces",
                "/ one copy",
                "regular files only",
                "links per user",
            ],
            rows,
        )
    if u and u["fixes_applied"]:
        text += "\n\npermission fixes needed for the non-root users:\n" + "\n".join(
            f"  - {f}" for f in u["fixes_applied"]
        )
    if u and u["ok"] < u["users"]:
        text += f"\n\nonly {u['ok']} of {u['users']} non-root pulls succeeded; first error:\n"
        text += next(r_["error"] for r_ in u["results"] if not r_["ok"])
    p = r.get("profile")
    if p:
        text += (
            f"\n\ncProfile of one cold pull of 'many' ({p['seconds']:.1f} s under the profiler):\n"
        )
        text += table(
            ["top cumulative", "ncalls", "tottime", "cumtime"],
            [
                [x["function"][:90], x["ncalls"], x["tottime"], x["cumtime"]]
                for x in p["top_cumulative"][:15]
            ],
        )
        text += "\n\n" + table(
            ["top tottime", "ncalls", "tottime", "cumtime"],
            [
                [x["function"][:90], x["ncalls"], x["tottime"], x["cumtime"]]
                for x in p["top_tottime"][:8]
            ],
        )
    s = r["dvc_cli_startup_s"]
    text += (
        f"\n\n`dvc --version` takes {s['version']:.2f} s, `dvc get --help` {s['get_help']:.2f} s "
        "(CLI start-up inside every dvc get). Pulls ran in this process with DVC imported."
    )
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
