"""Local mode isolates tenants: attacks from a real sandbox kernel through the real hub.

The hub runs as root (as deployed): alice and bob each get a unix account, a private
workspace and a cgroup. From bob's kernel every attack that worked when sandboxes ran as
root is tried again and must now fail with a permission error; the legitimate paths (pulls
through the read-only shared cache, a restricted dataset for its group, GPUs by device)
keep working.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .host import require_root_cgroups
from .hub import HubProcess
from .test_cgroups import make_gpu_nodes
from .test_hub_spawn import run_in_kernel

pytestmark = pytest.mark.hub

PROBE = """
import errno, json, os
def attempt(fn):
    try:
        result = fn()
        return "allowed" if result is None else result
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
"""


@pytest.fixture(scope="module")
def ihub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    require_root_cgroups()
    state: Path = tmp_path_factory.mktemp("isolation-hub")
    nodes = state / "dev"
    nodes.mkdir()
    make_gpu_nodes(nodes)
    for i in (2, 3):
        os.mknod(nodes / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(195, i))
        (nodes / f"nvidia{i}").chmod(0o666)
    site = (
        TEST_POLICY
        + f"""
c.LocalProfileSpawner.gpu_device_node = {str(nodes / "nvidia{id}")!r}
c.LocalProfileSpawner.gpu_control_nodes = [{str(nodes / "nvidiactl")!r}]
c.LocalProfileSpawner.max_tasks = 256
c.JupyterHub.load_groups = {{"ml-research": {{"users": ["alice"]}}}}
"""
    )
    hub = HubProcess(state, site).start()
    try:
        for user in ("alice", "bob"):
            r = hub.spawn(user, "", {"profile": "cpu-small", "cpu": 0.5, "memory": "1G"})
            assert r.status_code in (201, 202), r.text
        for user in ("alice", "bob"):
            hub.wait_ready(user, "", timeout=120)
        yield hub
    finally:
        hub.shutdown()


def platform(hub: HubProcess) -> Path:
    return hub.state / "platform"


def in_kernel(hub: HubProcess, user: str, code: str, server: str = "") -> dict[str, Any]:
    out = run_in_kernel(hub, user, server, PROBE + textwrap.dedent(code))
    return json.loads(out.strip().splitlines()[-1])


def running(pid: int, wait: float = 10) -> bool:
    """Whether ``pid`` still runs (a killed orphan may stay a zombie until init reaps it)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.1)
    return True


def pid_of(hub: HubProcess, user: str, server: str = "") -> int:
    return int(hub.server_state(user, server)["pid"])


def test_each_sandbox_runs_as_its_own_account(ihub: HubProcess) -> None:
    seen = {}
    for user in ("alice", "bob"):
        seen[user] = in_kernel(
            ihub,
            user,
            """
            import pwd
            print(json.dumps({"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name,
                              "home": os.environ["HOME"], "limits": os.environ["DSPLATFORM_LIMITS"],
                              "mode": oct(os.stat(os.environ["HOME"]).st_mode & 0o777),
                              "tmp": os.environ["TMPDIR"]}))
        """,
        )
    assert seen["alice"]["user"] == "dsp-alice" and seen["bob"]["user"] == "dsp-bob"
    assert 0 not in (seen["alice"]["uid"], seen["bob"]["uid"])
    assert seen["alice"]["uid"] != seen["bob"]["uid"]
    assert seen["bob"]["home"] == str(platform(ihub) / "users" / "bob")
    assert seen["bob"]["mode"] == "0o700" and seen["bob"]["limits"] == "cgroup-v1"
    assert seen["bob"]["tmp"].startswith(seen["bob"]["home"])
    assert "--allow-root" not in ihub.log_path.read_text()


def test_bob_cannot_read_or_write_alices_workspace(ihub: HubProcess) -> None:
    alice = platform(ihub) / "users" / "alice"
    in_kernel(ihub, "alice", "open('secret.txt', 'w').write('mine'); print(json.dumps({}))")
    got = in_kernel(
        ihub,
        "bob",
        f"""
        home = {str(alice)!r}
        print(json.dumps({{
            "list": attempt(lambda: os.listdir(home) and None),
            "read": attempt(lambda: open(home + "/secret.txt").read()),
            "write": attempt(lambda: open(home + "/bobwashere", "w").close()),
            "connection files": attempt(lambda: os.listdir(home + "/.local/share/jupyter/runtime")),
        }}))
    """,
    )
    assert got == {"list": "EACCES", "read": "EACCES", "write": "EACCES",
                   "connection files": "EACCES"}  # fmt: skip
    assert (alice / "secret.txt").read_text() == "mine" and not (alice / "bobwashere").exists()


def test_bob_cannot_read_the_hubs_secrets_or_database(ihub: HubProcess) -> None:
    state = platform(ihub)
    targets = ["jupyterhub_cookie_secret", "proxy_token", "admin_password", "user_password",
               "jupyterhub.sqlite", "mlflow/mlflow.db", "registries/demo/dvc.yaml"]  # fmt: skip
    got = in_kernel(
        ihub,
        "bob",
        f"""
        base = {str(state)!r}
        print(json.dumps({{t: attempt(lambda t=t: open(base + "/" + t, "rb").read(1))
                           for t in {targets!r}}}))
    """,
    )
    assert got == dict.fromkeys(targets, "EACCES")


def test_bob_cannot_take_alices_token_nor_signal_her_or_the_hub(ihub: HubProcess) -> None:
    alice, hub_pid = pid_of(ihub, "alice"), ihub.proc.pid  # type: ignore[union-attr]
    got = in_kernel(
        ihub,
        "bob",
        f"""
        import signal
        print(json.dumps({{
            "environ": attempt(lambda: open("/proc/{alice}/environ").read()),
            "kill alice": attempt(lambda: os.kill({alice}, signal.SIGKILL)),
            "kill hub": attempt(lambda: os.kill({hub_pid}, signal.SIGTERM)),
            "own environ": attempt(lambda: "JUPYTERHUB_API_TOKEN" in open("/proc/self/environ").read()),
        }}))
    """,
    )
    assert got == {"environ": "EACCES", "kill alice": "EPERM", "kill hub": "EPERM",
                   "own environ": True}  # fmt: skip
    assert ihub.server_model("alice")["ready"]  # alice's server is untouched


def test_bob_cannot_act_as_alice_or_an_admin_through_the_hub(ihub: HubProcess) -> None:
    alice_port = ihub.server_model("alice")["url"]
    got = in_kernel(
        ihub,
        "bob",
        f"""
        import urllib.request, urllib.error
        api, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        def call(method, url, headers=None):
            request = urllib.request.Request(url, method=method, data=b"{{}}" if method == "POST" else None,
                                             headers=headers or {{"Authorization": "token " + token}})
            try:
                return opener.open(request, timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code
        print(json.dumps({{
            "admin token": call("POST", api + "/users/admin/tokens"),
            "alice token": call("POST", api + "/users/alice/tokens"),
            "alice model": call("GET", api + "/users/alice"),
            "stop alice": call("DELETE", api + "/users/alice/server"),
            "alice's server": call("GET", "{ihub.url}{alice_port}api/contents", headers={{}}),
        }}))
    """,
    )
    assert got["admin token"] in (403, 404) and got["alice token"] in (403, 404)
    assert got["alice model"] in (403, 404) and got["stop alice"] in (403, 404)
    assert got["alice's server"] in (302, 403)
    assert ihub.server_model("alice")["ready"]


def test_the_shared_cache_cannot_be_poisoned(ihub: HubProcess) -> None:
    cache = platform(ihub) / "cache"
    objects = sorted(p for p in (cache / "files" / "md5").rglob("*") if p.is_file())
    assert objects, "the preload put iris into the cache"
    victim = objects[0]
    before = victim.read_bytes()
    got = in_kernel(
        ihub,
        "bob",
        f"""
        victim, folder = {str(victim)!r}, {str(victim.parent)!r}
        open("poison", "wb").write(b"poison")
        print(json.dumps({{
            "append": attempt(lambda: open(victim, "ab").write(b"poison")),
            "replace": attempt(lambda: os.replace("poison", victim)),
            "chmod": attempt(lambda: os.chmod(victim, 0o666)),
            "new object": attempt(lambda: open(folder + "/evil", "wb").close()),
            "unlink": attempt(lambda: os.unlink(victim)),
        }}))
    """,
    )
    assert got == {"append": "EACCES", "replace": "EACCES", "chmod": "EPERM",
                   "new object": "EACCES", "unlink": "EACCES"}  # fmt: skip
    assert victim.read_bytes() == before
    for path in [cache, *cache.rglob("*")]:
        mode = path.lstat().st_mode
        assert path.lstat().st_uid == 0, path
        assert not mode & 0o022, f"{path} is writable by others: {oct(mode)}"


def test_pulls_link_the_read_only_cache_and_stay_correct(ihub: HubProcess) -> None:
    got = in_kernel(
        ihub,
        "bob",
        """
        from server_ext import dsdata
        r = dsdata.pull("iris@v2", "data/iris2")
        status = {row["path"]: row["state"] for row in dsdata.status()}
        print(json.dumps({"links": r.links, "status": status,
                          "link": os.path.islink("data/iris2/iris.csv")}))
    """,
    )
    assert set(got["links"]) == {"symlink"} and got["link"] is True
    assert got["status"] == {"data/iris": "unchanged", "data/iris2": "unchanged"}


def test_a_restricted_dataset_reaches_only_its_group(ihub: HubProcess) -> None:
    registry = platform(ihub) / "registries" / "demo"
    got = in_kernel(
        ihub,
        "bob",
        f"""
        from server_ext import dsdata
        from server_ext.errors import DsdataError
        def pull(**env):
            os.environ.update(env)
            try:
                return dsdata.pull("churn", "data/churn").version
            except DsdataError as e:
                return type(e).__name__
            finally:
                for k in env: os.environ.pop(k)
        url = os.environ["DSDATA_CATALOG_URL"]
        catalog = os.environ.pop("DSDATA_CATALOG_URL")
        bypass = pull(DSDATA_REGISTRIES={str(registry)!r})
        os.environ["DSDATA_CATALOG_URL"] = catalog
        import urllib.request, urllib.error
        request = urllib.request.Request(url + "/churn/versions/v2.0.0/fetch", method="POST",
            data=b"", headers={{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}})
        try:
            fetch = urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as e:
            fetch = e.code
        print(json.dumps({{"catalog": pull(), "registries": bypass, "fetch": fetch,
                          "listed": sorted(d["name"] for d in dsdata.list_datasets())}}))
    """,
    )
    assert got == {"catalog": "UnknownDataset", "registries": "RegistryUnavailable",
                   "fetch": 404, "listed": ["iris"]}  # fmt: skip
    alice = in_kernel(
        ihub,
        "alice",
        """
        from server_ext import dsdata
        r = dsdata.pull("churn")
        print(json.dumps({"version": r.version, "links": r.links}))
    """,
    )
    assert alice == {"version": "v2.0.0", "links": {"symlink": 1}}


def test_the_sandbox_is_limited_as_a_whole(ihub: HubProcess) -> None:
    """1G and 0.5 CPU for bob's cpu-small: two children at 70 % of the memory grant cannot
    both hold it; two busy processes get about half a core; a fork loop stops at the limit."""
    got = in_kernel(
        ihub,
        "bob",
        """
        import mmap, signal, subprocess, sys, time
        hold = ("import mmap,sys,time\\nb=mmap.mmap(-1,int(sys.argv[1]),flags=mmap.MAP_SHARED|"
                "mmap.MAP_ANONYMOUS)\\nfor i in range(0,len(b),4096): b[i]=1\\ntime.sleep(20)")
        share = str(int(0.7 * 1024**3))
        children = [subprocess.Popen([sys.executable, "-c", hold, share]) for _ in range(2)]
        end = time.monotonic() + 60
        while time.monotonic() < end and all(c.poll() is None for c in children):
            time.sleep(0.2)
        memory = sorted(str(c.poll()) for c in children)
        for c in children:
            c.kill(); c.wait()
        group = [l.split(":")[2].strip() for l in open("/proc/self/cgroup") if ":cpuacct:" in l][0]
        usage = lambda: int(open("/sys/fs/cgroup/cpuacct" + group + "/cpuacct.usage").read())
        before, started = usage(), time.monotonic()
        busy = [subprocess.Popen([sys.executable, "-c",
                "import time\\nend=time.monotonic()+3\\nwhile time.monotonic()<end: pass"])
                for _ in range(2)]
        for b in busy: b.wait()
        share_cpu = (usage() - before) / 1e9 / (time.monotonic() - started)
        forked = []
        try:
            for _ in range(400):  # bounded: never more than this
                pid = os.fork()
                if pid == 0:
                    time.sleep(30); os._exit(0)
                forked.append(pid)
        except OSError as e:
            stopped = errno.errorcode[e.errno]
        else:
            stopped = "never"
        for pid in forked:
            os.kill(pid, 9); os.waitpid(pid, 0)
        print(json.dumps({"memory": memory, "cpu": share_cpu, "forked": len(forked),
                          "stopped": stopped}))
    """,
    )
    assert "-9" in got["memory"], got  # one child was OOM-killed inside bob's sandbox
    assert 0.2 < got["cpu"] < 0.8, got  # two busy loops unconfined would use ~2 cores
    assert got["stopped"] == "EAGAIN" and got["forked"] < 256, got
    assert ihub.server_model("alice")["ready"] and ihub.server_model("bob")["ready"]


def test_a_gpu_sandbox_opens_only_its_own_device(ihub: HubProcess) -> None:
    r = ihub.spawn("alice", "gpu", {"profile": "gpu-a100", "gpus": 1})
    assert r.status_code in (201, 202), r.text
    ihub.wait_ready("alice", "gpu", timeout=120)
    try:
        nodes = ihub.state / "dev"
        got = in_kernel(
            ihub,
            "alice",
            f"""
            result = {{"visible": os.environ["CUDA_VISIBLE_DEVICES"]}}
            for i in range(4):
                result[str(i)] = attempt(lambda i=i: os.close(os.open({str(nodes)!r} + f"/nvidia{{i}}", os.O_RDWR)))
            print(json.dumps(result))
        """,
            server="gpu",
        )
        mine = got.pop("visible")
        assert mine == "0"
        # no driver here: its own node opens up to the driver (ENXIO); the others are refused
        assert got == {"0": "ENXIO", "1": "EPERM", "2": "EPERM", "3": "EPERM"}
    finally:
        ihub.stop_server("alice", "gpu")


def test_nothing_others_reach_in_the_state_is_world_writable(ihub: HubProcess) -> None:
    """No file or directory another account can reach is writable by it (locks and
    manifests included); a world-writable directory would need the sticky bit."""

    def walk(directory: Path) -> Iterator[Path]:
        for entry in directory.iterdir():
            st = entry.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            yield entry
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o001:  # others may enter it
                yield from walk(entry)

    for path in walk(platform(ihub)):
        mode = path.lstat().st_mode
        if mode & 0o002:
            assert stat.S_ISDIR(mode) and mode & stat.S_ISVTX, f"{path}: {oct(mode)}"
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "proxy_token"):
        assert (platform(ihub) / name).stat().st_mode & 0o077 == 0, name


def test_stopping_removes_the_sandbox_and_its_strays(ihub: HubProcess) -> None:
    r = ihub.spawn("alice", "extra", {"profile": "cpu-small"})
    assert r.status_code in (201, 202), r.text
    ihub.wait_ready("alice", "extra", timeout=120)
    got = in_kernel(
        ihub,
        "alice",
        """
        import subprocess, sys
        stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                 start_new_session=True)
        group = [l.split(":")[2].strip() for l in open("/proc/self/cgroup") if ":memory:" in l][0]
        print(json.dumps({"stray": stray.pid, "group": group}))
    """,
        server="extra",
    )
    ihub.stop_server("alice", "extra")
    assert not running(got["stray"])  # killed with its sandbox
    assert not Path("/sys/fs/cgroup/memory" + got["group"]).exists()


def test_requests_from_the_sandbox_to_the_hub_still_work(ihub: HubProcess) -> None:
    r = requests.get(f"{ihub.api_url}/dsplatform/usage",
                     headers={"Authorization": f"token {ihub.token_for('bob')}"}, timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.json()["user"] == "bob"
