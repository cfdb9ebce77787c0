"""The platform ``bench_pull`` pulls through: the default local mode with isolation on.

A real hub as root (``tests.hub.HubProcess``: the embedded ``jupyterhub_config.py``, its
catalog service as the one writer of the shared cache, MLflow off), real sandbox accounts
(``dsp-<user>``, as the spawner creates them) and, per account, one long-lived pull worker
running as that account: like a kernel, it imports ``server_ext`` once and then pulls with
``DataService`` what it is sent, through ``DSDATA_CATALOG_URL`` with the user's hub token,
into a workspace the account owns. Each pull's time is measured inside the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub_ext.spawners.accounts import (
    Account,
    account_name,
    drop_privileges,
    ensure_account,
    prepare_workspace,
)
from tests.hub import HubProcess, traversable

SITE = """
c.PlatformMLflow.enabled = False
c.PlatformCatalog.enabled = True
c.DatasetCatalog.registries = [{registry!r}]
c.DatasetCatalog.refresh_seconds = 3600
c.ProfileSpawner.toolchains = {{"scipy": {{"local_python": None}}}}
c.ProfileSpawner.profiles = [{{"slug": "cpu-small", "toolchain": "scipy"}}]
"""

WORKER = r"""
import json, sys, time
from pathlib import Path
from server_ext.core import DataService
for line in sys.stdin:
    request = json.loads(line)
    t0 = time.perf_counter()
    try:
        service = DataService(root=Path(request["ws"]))
        if request.get("list"):
            out = {"ok": True, "datasets": [e.name for e in service.list_datasets()]}
        else:
            r = service.pull(request["ref"])
            out = {"ok": True, "links": r.links, "from_cache": r.from_cache,
                   "downloaded": r.downloaded_objects, "files": r.files}
    except Exception as e:
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)
"""


class Worker:
    """One user's pulls, as the user's sandbox account."""

    def __init__(self, hub: HubProcess, user: str, base: Path) -> None:
        self.user, self.base = user, base
        self.home = base / user
        self.account: Account = ensure_account(
            account_name("dsp-{username}", user), self.home, f"bench user {user}", (20000, 29999)
        )
        prepare_workspace(self.home, self.account)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": os.fspath(self.home),
            "USER": self.account.name,
            "LANG": "C.UTF-8",
            "DSDATA_CATALOG_URL": f"http://127.0.0.1:{hub.catalog_port}/services/catalog/api/datasets",
            "JUPYTERHUB_API_TOKEN": hub.token_for(user),
            "DSDATA_CACHE_DIR": os.fspath(cache_of(hub)),
            "DVC_SITE_CACHE_DIR": os.fspath(self.home / ".cache" / "dvc-site"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        account = self.account
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            cwd=self.home,
            preexec_fn=lambda: drop_privileges(account),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        warm = self.call({"list": True, "ws": os.fspath(self.home)})  # imports, the catalog
        if not warm["ok"]:
            raise SystemExit(f"{user}: {warm['error']}")

    def workspace(self, label: str) -> Path:
        """A new, empty workspace of this user."""
        ws = self.home / label
        ws.mkdir(mode=0o700)
        os.chown(ws, self.account.uid, self.account.gid)
        return ws

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def pull(self, ref: str, ws: Path) -> dict[str, Any]:
        os.sync()  # untimed: what the previous method wrote is flushed
        out = self.call({"ref": ref, "ws": os.fspath(ws)})
        if not out["ok"]:
            raise SystemExit(f"pull of {ref} as {self.account.name} failed: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def cache_of(hub: HubProcess) -> Path:
    return hub.state / "platform" / "cache"


def empty_cache(hub: HubProcess) -> None:
    """The shared cache as on a new platform (the catalog keeps no state of its own)."""
    for child in ("files", "locks"):
        subprocess.run(["rm", "-rf", os.fspath(cache_of(hub) / child)], check=True)


@contextmanager
def platform(base: Path, registry: Path, users: int) -> Iterator[tuple[HubProcess, list[Worker]]]:
    """A running hub as root with its catalog over ``registry``, and ``users`` workers."""
    if os.geteuid() != 0:
        raise SystemExit("bench_pull measures the isolated local mode: run it as root")
    hub = HubProcess(base / "hub", SITE.format(registry=os.fspath(registry))).start(timeout=120)
    homes = base / "homes"
    homes.mkdir()
    traversable(homes)
    workers: list[Worker] = []
    try:
        workers = [Worker(hub, f"bench{i}", homes) for i in range(users)]
        yield hub, workers
    finally:
        for worker in workers:
            worker.close()
        hub.stop()
        for worker in workers:
            subprocess.run(["userdel", worker.account.name], capture_output=True)
