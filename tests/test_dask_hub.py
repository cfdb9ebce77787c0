"""Dask clusters through the real hub: dask-gateway as a hub-managed service, a cluster made
from a sandbox kernel with ``Gateway().new_cluster()`` and no arguments, its workers as the
user's account in their own cgroups, each admitted by the hub's ledger (the third over the
user's quota refused with numbers), one user's cluster out of another's reach, and GPU
workers and jobs of two users never overshooting a 3-GPU pool."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .hub import ADMIN_TOKEN, HubProcess
from .jobs import TIMED, account_uid, submit, wait_job, write_notebook
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

DASK_POLICY = (
    TEST_POLICY
    + """
c.DaskClusters.enabled = True
c.DaskClusters.heartbeat_period = 2
c.QuotaPolicy.users = {"dana": {"servers": 2, "cpu": 2, "memory": "4G"}, "erin": {"cpu": 0.5}}
c.QuotaPolicy.group_pools = {"ml-research": {"gpus": 3}}
c.NotebookJobs.max_runtime = 600
"""
)
PROBE = """
import json, os, warnings
warnings.simplefilter("ignore")
from dask_gateway import Gateway
"""


@pytest.fixture(scope="module")
def dhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("dask-hub"), DASK_POLICY).start()
    try:
        for user in ("dana", "erin", "alice", "carol"):
            r = hub.spawn(user, "", {"profile": "cpu-small", "cpu": 0.5, "memory": "1G"})
            assert r.status_code in (201, 202), r.text
        for user in ("dana", "erin", "alice", "carol"):
            hub.wait_ready(user, timeout=120)
        wait_gateway(hub)
        yield hub
    finally:
        hub.shutdown()


def wait_gateway(hub: HubProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hub.session.get(f"{hub.url}/services/dask-gateway/api/health").ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"dask-gateway did not answer:\n{hub.log()}")


def kernel(hub: HubProcess, user: str, code: str) -> dict[str, Any]:
    out = run_in_kernel(hub, user, "", PROBE + code, timeout=300)  # clusters start slowly
    return json.loads(out.strip().splitlines()[-1])


def workers(hub: HubProcess, everyone: bool = True) -> list[dict[str, Any]]:
    r = hub.session.get(f"{hub.api_url}/dsplatform/workers", params={"all": "1"},
                        headers={"Authorization": f"token {ADMIN_TOKEN}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return list(r.json()["workers"])


def test_a_cluster_from_a_sandbox_computes_on_two_workers_and_a_third_is_refused(
    dhub: HubProcess,
) -> None:
    result = kernel(dhub, "dana", """
gateway = Gateway()
# kept after this kernel ends (the test looks at its grants, then stops it)
cluster = gateway.new_cluster(worker_cores=0.5, worker_memory="1G", shutdown_on_close=False)
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=120)
info = client.scheduler_info()["workers"]
uids = client.run(os.getuid)
limits = client.run(lambda: os.environ["DSPLATFORM_LIMITS"])
total = client.submit(sum, client.map(lambda x: x * x, range(100))).result()
scheduler = client.run_on_scheduler(lambda: [os.getuid(), open("/proc/self/cgroup").read()])
try:
    cluster.scale(3)
    refused = ""
except Exception as e:
    refused = f"{type(e).__name__}: {e}"
import time; time.sleep(3)
after = len(client.scheduler_info()["workers"])
names = [c.name for c in gateway.list_clusters()]
print(json.dumps({"total": total, "workers": len(info), "uids": sorted(set(uids.values())),
                  "limits": sorted(set(limits.values())), "refused": refused, "after": after,
                  "name": cluster.name, "names": names, "scheduler": scheduler,
                  "threads": sorted({w["nthreads"] for w in info.values()}),
                  "memory": sorted({w["memory_limit"] for w in info.values()})}))
""")  # fmt: skip
    assert result["total"] == sum(x * x for x in range(100))
    assert result["workers"] == 2 and result["after"] == 2
    assert result["uids"] == [account_uid("dana")]  # as the user's account
    assert os.stat("/").st_uid == 0  # (dask-gateway-server's LocalBackend would chown it)
    cluster_dir = dhub.state / "platform" / "dask" / result["name"]
    assert cluster_dir.stat().st_uid == account_uid("dana")
    assert cluster_dir.stat().st_mode & 0o777 == 0o700
    assert result["limits"] == ["cgroup-v1"]
    assert result["scheduler"][0] == account_uid("dana")  # the scheduler too, in its cgroup
    assert "dask-scheduler" in result["scheduler"][1], result["scheduler"]
    assert result["threads"] == [1] and result["memory"] == [2**30]
    # the third: over dana's CPU quota (sandbox 0.5 + scheduler 0.5 + 2 workers of 0.5)
    assert "GatewayClusterError" in result["refused"], result
    assert "Scaling to 3 workers refused" in result["refused"]
    assert (
        "cpu" in result["refused"].lower()
        and "running 2 + requested 0.5 = 2.5" in result["refused"]
    ), result
    assert result["names"] == [result["name"]]
    held = [w for w in workers(dhub) if w["user"] == "dana"]
    assert len(held) == 3 and {w["cluster"] for w in held} == {result["name"]}
    assert sorted((w["cpu"], w["memory"]) for w in held) == [
        (0.5, 512 * 2**20),
        (0.5, 2**30),
        (0.5, 2**30),
    ]  # the scheduler, two workers
    usage = dhub.usage("dana")
    assert usage["usage"]["cpu"] == 2, usage  # the sandbox and its cluster, one ledger
    r = dhub.session.get(f"{dhub.api_url}/dsplatform/usage", params={"all": "1"},
                         headers={"Authorization": f"token {ADMIN_TOKEN}"})  # fmt: skip
    rows = [row for row in r.json()["servers"] if row["user"] == "dana"]
    assert sorted(row["state"] for row in rows) == ["running", *["worker"] * 3], rows

    # the quota is shared with servers: a second server of dana's is refused while they run
    r = dhub.spawn("dana", "more", {"profile": "cpu-small", "cpu": 0.5})
    assert r.status_code == 403 and "cpu" in r.text.lower(), r.text

    kernel(dhub, "dana", f"""
gateway = Gateway()
gateway.stop_cluster({result["name"]!r})
print(json.dumps({{}}))
""")  # fmt: skip
    deadline = time.monotonic() + 60
    while [w for w in workers(dhub) if w["user"] == "dana"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [w for w in workers(dhub) if w["user"] == "dana"]
    assert dhub.usage("dana")["usage"]["cpu"] == 0.5


def test_cluster_options_outside_the_profiles_are_refused_at_creation(dhub: HubProcess) -> None:
    out = kernel(dhub, "dana", """
gateway = Gateway()
out = {"options": sorted(gateway.cluster_options())}
for name, kwargs in [("memory", {"worker_memory": "3G"}), ("profile", {"profile": "gpu-a100"}),
                     ("gpus", {"worker_gpus": 1})]:
    try:
        gateway.new_cluster(**kwargs).shutdown()
        out[name] = "created"
    except Exception as e:
        out[name] = f"{type(e).__name__}: {e}"
out["left"] = [c.name for c in gateway.list_clusters()]
print(json.dumps(out))
""")  # fmt: skip
    assert out["options"] == ["profile", "worker_cores", "worker_gpus", "worker_memory"]
    assert out["memory"].startswith("ValueError") and "memory" in out["memory"], out
    assert "2G" in out["memory"], out  # the profile's range, from the hub
    assert out["profile"].startswith("ValueError") and "gpu-a100" in out["profile"], out
    assert out["gpus"].startswith("ValueError"), out  # cpu-small has no GPUs
    assert out["left"] == []


def test_another_users_cluster_is_out_of_reach_and_the_gateway_api_is_for_the_gateway(
    dhub: HubProcess,
) -> None:
    mine = kernel(dhub, "dana", """
cluster = Gateway().new_cluster(worker_cores=0.5, worker_memory="1G", shutdown_on_close=False)
cluster.scale(1)
cluster.get_client().wait_for_workers(1, timeout=120)
print(json.dumps({"name": cluster.name}))
""")["name"]  # fmt: skip
    workdir = dhub.state / "platform" / "dask" / mine
    attack = kernel(dhub, "erin", f"""
import urllib.request, urllib.error
gateway = Gateway()
seen = [c.name for c in gateway.list_clusters()]
out = {{"seen": seen}}
for what, call in [("connect", lambda: gateway.connect({mine!r})),
                   ("scale", lambda: gateway.scale_cluster({mine!r}, 0)),
                   ("stop", lambda: gateway.stop_cluster({mine!r}))]:
    try:
        call()
        out[what] = "done"
    except Exception as e:
        out[what] = type(e).__name__ + ": " + str(e)
try:
    gateway.new_cluster()
    out["create"] = "created"
except Exception as e:
    out["create"] = type(e).__name__ + ": " + str(e)
api = os.environ["JUPYTERHUB_API_URL"] + "/dsplatform/workers"
auth = {{"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"],
         "Content-Type": "application/json"}}
body = json.dumps({{"user": "erin", "cluster": "x1", "options": {{"profile": "cpu-small"}},
                    "live": []}}).encode()
for method, path in [("POST", ""), ("PUT", ""), ("DELETE", "?cluster={mine}"),
                     ("GET", "/options?user=dana"), ("POST", "/check")]:
    req = urllib.request.Request(api + path, data=body if method in ("POST", "PUT") else None,
                                 headers=auth, method=method)
    try:
        out[method + path] = urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        out[method + path] = e.code
try:
    os.listdir({str(workdir)!r})
    out["workdir"] = "listed"
except PermissionError:
    out["workdir"] = "denied"
print(json.dumps(out))
""")  # fmt: skip
    assert mine not in attack["seen"]
    for what in ("connect", "scale", "stop"):
        assert attack[what] != "done" and "403" in attack[what], attack  # the gateway's check
    assert {k: v for k, v in attack.items() if k.startswith(("POST", "PUT", "DELETE", "GET"))} == {
        "POST": 403, "PUT": 403, f"DELETE?cluster={mine}": 403, "GET/options?user=dana": 403,
        "POST/check": 403,
    }, attack  # fmt: skip
    assert attack["workdir"] == "denied"
    # erin's own cluster: its scheduler does not fit her quota (her sandbox holds 0.5 of 0.5)
    assert attack["create"].startswith("ValueError: New cluster refused"), attack
    assert (
        "cpu" in attack["create"].lower() and "running 0.5 + requested 0.5 = 1" in attack["create"]
    ), attack
    # a token of erin's without access to the gateway service is turned away
    r = dhub.api("POST", "/users/erin/tokens", json={"scopes": ["read:users:name!user=erin"]})
    assert r.status_code == 201, r.text
    narrow = r.json()["token"]
    r = dhub.session.get(f"{dhub.url}/services/dask-gateway/api/v1/clusters/",
                         headers={"Authorization": f"jupyterhub {narrow}"})  # fmt: skip
    assert r.status_code == 401, r.text

    # the legitimate path still works: dana's cluster kept its worker and computes
    again = kernel(dhub, "dana", f"""
cluster = Gateway().connect({mine!r})
client = cluster.get_client()
value = client.submit(lambda: 6 * 7).result()
n = len(client.scheduler_info()["workers"])
cluster.shutdown()
print(json.dumps({{"value": value, "workers": n}}))
""")  # fmt: skip
    assert again == {"value": 42, "workers": 1}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        workdir.exists() or [w for w in workers(dhub) if w["user"] == "dana"]
    ):
        time.sleep(0.5)
    assert not [w for w in workers(dhub) if w["user"] == "dana"]
    assert not workdir.exists()  # its TLS key and logs go with the cluster


def _max_concurrent_gpus(hub: HubProcess, since: str) -> int:
    with sqlite3.connect(hub.state / "platform" / "jupyterhub.sqlite") as db:
        rows = db.execute(
            "SELECT gpus, started, COALESCE(stopped, '9999') FROM dsplatform_gpu_sessions"
            " WHERE started >= ?", (since,),
        ).fetchall()  # fmt: skip
    return max((sum(g for g, s, e in rows if s <= start < e) for _, start, _ in rows), default=0)


def test_two_users_gpu_workers_and_jobs_never_overshoot_the_group_pool(dhub: HubProcess) -> None:
    for user in ("alice", "carol"):
        write_notebook(dhub, user, "timed.ipynb", TIMED, parameters="seconds = 1\nname = 'x'")
    with sqlite3.connect(dhub.state / "platform" / "jupyterhub.sqlite") as db:
        since = db.execute("SELECT datetime('now')").fetchone()[0]

    def cluster(user: str) -> dict[str, Any]:
        return kernel(dhub, user, """
import time
gateway = Gateway()
cluster = gateway.new_cluster(profile="gpu-a100", worker_gpus=1, worker_cores=1,
                              worker_memory="1G")
client = cluster.get_client()
refusals, deadline = [], time.monotonic() + 120
while time.monotonic() < deadline and len(client.scheduler_info()["workers"]) < 1:
    try:
        cluster.scale(3)
    except Exception as e:
        refusals.append(str(e))
    time.sleep(1)
time.sleep(4)
devices = list(client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"]).values())
cluster.shutdown()
print(json.dumps({"devices": devices, "refusals": refusals}))
""")  # fmt: skip

    def job(user: str) -> str:
        r = submit(dhub, user, {"notebook": "timed.ipynb", "profile": "gpu-a100", "gpus": 1,
                                "wait": True, "parameters": {"seconds": 6, "name": "storm"}})  # fmt: skip
        assert r.status_code in (201, 202), r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(4) as pool:
        jobs = {u: pool.submit(job, u) for u in ("alice", "carol")}
        clusters = {u: pool.submit(cluster, u) for u in ("alice", "carol")}
        results = {u: f.result() for u, f in clusters.items()}
        ids = {u: f.result() for u, f in jobs.items()}
    for user, job_id in ids.items():
        assert wait_job(dhub, user, job_id, timeout=240)["state"] == "succeeded"
    for result in results.values():
        assert 1 <= len(result["devices"]) <= 3, result
        assert len(set(result["devices"])) == len(result["devices"]), result  # one GPU each
    refusals = [m for r in results.values() for m in r["refusals"]]
    assert all("refused" in m and "GPU" in m for m in refusals), refusals
    # the ledger's own record of every GPU grant (servers, jobs, workers): never over 3
    assert _max_concurrent_gpus(dhub, since) <= 3
    deadline = time.monotonic() + 60
    while workers(dhub) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not workers(dhub)
    assert dhub.usage("alice")["pools"]["nvidia-a100"]["used"] == 0


def test_a_hub_restart_gives_back_the_grants_of_workers_that_no_longer_run(
    dhub: HubProcess,
) -> None:
    dhub.stop()
    # a grant kept from before (as if its worker had outlived the hub): put back into the
    # ledger at start, then given back when the gateway reports what it runs
    grant = {"id": "f" * 32, "user": "dana", "server": "dask/0123abcd/00000000",
             "profile": "cpu-small", "cpu": 0.5, "memory": 2**30, "gpus": 0, "gpu_type": None,
             "disk": None, "devices": [], "groups": [], "session_id": None,
             "reserved_at": time.time(), "kind": "worker"}  # fmt: skip
    with sqlite3.connect(dhub.state / "platform" / "jupyterhub.sqlite") as db:
        db.execute(
            'INSERT INTO dsplatform_dask_workers (grant_id, user, cluster, "grant", created)'
            " VALUES (?, 'dana', '0123abcd', ?, datetime('now'))",
            (grant["id"], json.dumps(grant)),
        )
    dhub.start()
    wait_gateway(dhub)
    deadline = time.monotonic() + 30
    while workers(dhub) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not workers(dhub)
    log = dhub.log_path.read_text()
    assert "1 Dask workers' grants restored" in log
    assert "Gave back 1 grants of workers that no longer run" in log
    assert dhub.usage("dana")["usage"]["cpu"] == 0.5  # the sandbox alone again
