"""Notebook jobs through the real hub: papermill runs them as the user's account in their own
cgroup, admitted by the same ledger as servers (GPU pool, quotas, GPU-hours), queued when
asked to wait, cancelled with their process tree, never culled, kept across a hub restart."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from hub_ext.services.culler import timeout_for

from .conftest import TEST_POLICY
from .hub import HubProcess
from .jobs import (
    TIMED,
    account_uid,
    admin_page,
    job,
    servers,
    submit,
    wait_job,
    workspace,
    write_notebook,
)
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

JOB_POLICY = (
    TEST_POLICY
    + """
c.QuotaPolicy.group_pools = {"ml-research": {"gpus": 3}}
c.NotebookJobs.max_runtime = 600
c.ProfileSpawner.profiles.append({"slug": "quick", "toolchain": "scipy", "cpu": 0.5,
                                  "memory": "512M", "groups": ["*"], "idle_timeout": 5})
"""
)
SLEEPER = (
    "import os, pathlib, subprocess, time\n"
    "child = subprocess.Popen(['sleep', '600'])\n"
    "pathlib.Path(f'pids-{name}.txt').write_text(f'{os.getpid()} {child.pid}')\n"
    "time.sleep(seconds)\n"
)

TRAIN = (
    "import json, os, pathlib\n"
    "out = {'alpha': alpha, 'name': name, 'uid': os.getuid(), 'user': os.environ.get('USER'),\n"
    "       'cuda': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
    "       'profile': os.environ.get('DSPLATFORM_PROFILE'),\n"
    "       'resources': json.loads(os.environ['DSPLATFORM_RESOURCES']),\n"
    "       'catalog': bool(os.environ.get('DSDATA_CATALOG_URL'))}\n"
    "pathlib.Path(f'result-{name}.json').write_text(json.dumps(out))\n"
    "print('doubled', alpha * 2)\n"
)


@pytest.fixture(scope="module")
def jhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("jobs-hub"), JOB_POLICY).start()
    try:
        for user in ("alice", "carol"):  # their accounts and workspaces
            assert hub.spawn(user, "", {"profile": "cpu-small", "cpu": 0.5}).status_code in (
                201,
                202,
            )
            hub.wait_ready(user, timeout=120)
        write_notebook(hub, "alice", "train.ipynb", TRAIN, parameters="alpha = 1\nname = 'x'")
        for user in ("alice", "carol"):
            write_notebook(hub, user, "work/sleep.ipynb", SLEEPER,
                           parameters="seconds = 1\nname = 'x'")  # fmt: skip
            write_notebook(hub, user, "timed.ipynb", TIMED, parameters="seconds = 1\nname = 'x'")
        yield hub
    finally:
        hub.shutdown()


def test_a_parameterised_job_runs_as_the_user_and_keeps_its_output(jhub: HubProcess) -> None:
    r = submit(jhub, "alice", {"notebook": "train.ipynb", "profile": "cpu-small", "cpu": 1,
                               "parameters": {"alpha": 21, "name": "first"}})  # fmt: skip
    assert r.status_code == 201, r.text
    submitted = r.json()
    assert submitted["state"] in ("starting", "running") and submitted["user"] == "alice"
    done = wait_job(jhub, "alice", submitted["id"])
    assert done["state"] == "succeeded" and done["exit_code"] == 0, done
    assert done["duration"] > 0 and done["output"] == f"jobs/{done['id']}/train.ipynb"

    home = workspace(jhub, "alice")
    result = json.loads((home / "result-first.json").read_text())
    assert result["alpha"] == 21 and result["profile"] == "cpu-small" and result["catalog"]
    assert result["resources"]["cpu"] == 1 and result["cuda"] == ""
    if account_uid("alice") is not None:  # as alice's account, never root
        assert result["uid"] == account_uid("alice") and result["user"] == "dsp-alice"
    executed = nbformat.read(home / done["output"], as_version=4)
    outputs = [o.get("text", "") for c in executed["cells"] for o in c.get("outputs", [])]
    assert "doubled 42\n" in outputs
    assert any("parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    log = (home / done["log"]).read_text()
    assert "the notebook ran to its end" in log
    assert "doubled 42" not in jhub.log()  # the notebook's output stays in the user's log

    # the job's server is gone and its grant released: only the sandbox is held
    deadline = time.monotonic() + 30
    while f"job-{done['id']}" in servers(jhub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert list(servers(jhub, "alice")) == [""]
    assert jhub.usage("alice")["usage"]["cpu"] == 0.5
    listed = jhub.api("GET", "/dsplatform/jobs", token=jhub.token_for("alice")).json()["jobs"]
    assert done["id"] in [j["id"] for j in listed]
    # other users do not see it
    assert jhub.api("GET", f"/dsplatform/jobs/{done['id']}",
                    token=jhub.token_for("erin")).status_code == 404  # fmt: skip
    erins = jhub.api("GET", "/dsplatform/jobs", token=jhub.token_for("erin")).json()["jobs"]
    assert erins == []
    # every route needs a hub token
    for method, path in (("GET", "/dsplatform/jobs"), ("POST", "/dsplatform/jobs"),
                         ("GET", f"/dsplatform/jobs/{done['id']}"),
                         ("DELETE", f"/dsplatform/jobs/{done['id']}"),
                         ("POST", f"/dsplatform/jobs/{done['id']}/result")):  # fmt: skip
        r = jhub.api(method, path, token="not-a-token", json={})
        assert r.status_code == 403, (method, path, r.status_code)


def gpu_sessions(hub: HubProcess, server: str) -> list[tuple[int, str | None]]:
    with sqlite3.connect(hub.state / "platform" / "jupyterhub.sqlite") as db:
        rows = db.execute("SELECT gpus, stopped FROM dsplatform_gpu_sessions WHERE server = ?",
                          (server,)).fetchall()  # fmt: skip
    return [(int(g), s) for g, s in rows]


def test_a_gpu_job_gets_its_devices_and_counts_gpu_hours(jhub: HubProcess) -> None:
    r = submit(jhub, "alice", {"notebook": "train.ipynb", "profile": "gpu-a100", "gpus": 2,
                               "parameters": {"alpha": 1, "name": "gpu"}})  # fmt: skip
    assert r.status_code == 201, r.text
    done = wait_job(jhub, "alice", r.json()["id"])
    assert done["state"] == "succeeded", done
    result = json.loads((workspace(jhub, "alice") / "result-gpu.json").read_text())
    assert result["cuda"] == "0,1" and result["resources"]["gpus"] == 2
    [(gpus, stopped)] = gpu_sessions(jhub, f"job-{done['id']}")
    assert gpus == 2 and stopped is not None  # in the same week's GPU-hours, closed at its end


def test_over_quota_is_refused_with_numbers_or_waits_its_turn(jhub: HubProcess) -> None:
    never = submit(jhub, "alice", {"notebook": "train.ipynb", "profile": "gpu-a100", "gpus": 4,
                                   "wait": True})  # fmt: skip
    assert never.status_code == 403, never.text
    assert never.json()["message"] == (
        "GPU quota exceeded: ml-research allows 3 GPUs per user; running 0 + requested 4 = 4"
    )
    assert submit(jhub, "alice", {"notebook": "../x.ipynb"}).status_code == 400
    assert submit(jhub, "alice", {"notebook": "train.ipynb", "cpu": 99}).status_code == 400
    assert submit(jhub, "alice", {"notebook": "train.ipynb", "bogus": 1}).status_code == 400

    assert jhub.spawn("carol", "g", {"profile": "gpu-a100", "gpus": 2}).status_code in (201, 202)
    jhub.wait_ready("carol", "g", timeout=120)
    try:
        body = {"notebook": "timed.ipynb", "profile": "gpu-a100", "gpus": 2,
                "parameters": {"seconds": 1, "name": "queued-a"}}  # fmt: skip
        now = submit(jhub, "alice", body)
        assert now.status_code == 403, now.text
        assert now.json()["message"] == ("GPU pool of group ml-research is full: 3 GPUs shared "
                                         "by its members; in use 2 + requested 2 = 4")  # fmt: skip
        first = submit(jhub, "alice", {**body, "wait": True})
        assert first.status_code == 202 and first.json()["position"] == 1, first.text
        # one GPU is free, but the queue is first come, first served
        second = submit(jhub, "alice", {**body, "gpus": 1, "wait": True,
                                        "parameters": {"seconds": 1, "name": "queued-b"}})  # fmt: skip
        assert second.status_code == 202 and second.json()["position"] == 2, second.text
        admin = jhub.api("GET", "/dsplatform/jobs?all=1").json()
        assert admin["queues"] == {"group:ml-research": [first.json()["id"], second.json()["id"]]}
        assert jhub.api("GET", "/dsplatform/jobs?all=1",
                        token=jhub.token_for("alice")).status_code == 403  # fmt: skip
        page = admin_page(jhub)
        assert f'data-job="{first.json()["id"]}" data-state="queued"' in page
        assert "queued (#2)" in page
        time.sleep(2)
        assert job(jhub, "alice", first.json()["id"])["state"] == "queued"
    finally:
        jhub.stop_server("carol", "g")
    a = wait_job(jhub, "alice", first.json()["id"])
    b = wait_job(jhub, "alice", second.json()["id"])
    assert (a["state"], b["state"]) == ("succeeded", "succeeded"), (a, b)
    assert a["started"] <= b["started"]


def test_cancel_stops_the_process_tree(jhub: HubProcess) -> None:
    r = submit(jhub, "alice", {"notebook": "work/sleep.ipynb", "profile": "cpu-small",
                               "parameters": {"seconds": 600, "name": "cancel"}})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    pids_file = workspace(jhub, "alice") / "work" / "pids-cancel.txt"
    deadline = time.monotonic() + 90
    while not pids_file.exists():
        assert time.monotonic() < deadline, jhub.log()[-2000:]
        time.sleep(0.3)
    kernel, child = (int(p) for p in pids_file.read_text().split())
    assert wait_job(jhub, "alice", job_id, ("running",))["state"] == "running"
    # another user cannot cancel it (not even see it)
    assert jhub.api("DELETE", f"/dsplatform/jobs/{job_id}",
                    token=jhub.token_for("carol")).status_code == 404  # fmt: skip
    cancelled = jhub.api("DELETE", f"/dsplatform/jobs/{job_id}", token=jhub.token_for("alice"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in (kernel, child)):
        assert time.monotonic() < deadline, "the job's processes outlived its cancel"
        time.sleep(0.3)
    assert wait_job(jhub, "alice", job_id)["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while f"job-{job_id}" in servers(jhub, "alice") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert f"job-{job_id}" not in servers(jhub, "alice")
    assert jhub.usage("alice")["usage"]["cpu"] == 0.5


def test_job_servers_start_only_for_jobs_and_the_culler_leaves_them(jhub: HubProcess) -> None:
    forged = jhub.spawn("alice", "job-aaaaaaaaaaaa", {"profile": "quick",
                                                      "job": {"id": "aaaaaaaaaaaa"}})  # fmt: skip
    assert forged.status_code == 400 and "notebook jobs" in forged.json()["message"], forged.text
    assert jhub.spawn("alice", "job-mine", {"profile": "quick"}).status_code == 400
    assert timeout_for({"user_options": {"profile": "quick", "job": {"id": "x"}}},
                       {"quick": 5}, 5) == 0  # fmt: skip

    # a job on a profile culled after 5 idle seconds runs 20 s; a sandbox on it is culled
    r = submit(jhub, "carol", {"notebook": "timed.ipynb", "profile": "quick",
                               "parameters": {"seconds": 20, "name": "culled?"}})  # fmt: skip
    assert r.status_code == 201, r.text
    assert jhub.spawn("carol", "idle", {"profile": "quick"}).status_code in (201, 202)
    done = wait_job(jhub, "carol", r.json()["id"])
    assert done["state"] == "succeeded" and done["duration"] >= 20, done
    deadline = time.monotonic() + 60
    while "idle" in servers(jhub, "carol") and servers(jhub, "carol")["idle"].get("ready"):
        assert time.monotonic() < deadline, "the idle sandbox was not culled"
        time.sleep(1)


def test_two_users_jobs_never_overshoot_the_group_pool(jhub: HubProcess) -> None:
    def one(args: tuple[str, int]) -> str:
        user, i = args
        r = submit(jhub, user, {"notebook": "timed.ipynb", "profile": "gpu-a100", "gpus": 1,
                                "wait": True, "parameters": {"seconds": 2, "name": f"s{i}"}})  # fmt: skip
        assert r.status_code in (201, 202), r.text
        return str(r.json()["id"])

    storm = [(u, i) for i in range(4) for u in ("alice", "carol")]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, storm))
    for (user, _), job_id in zip(storm, ids, strict=True):
        assert wait_job(jhub, user, job_id, timeout=240)["state"] == "succeeded"
    spans = [json.loads((workspace(jhub, u) / f"span-s{i}.json").read_text()) for u, i in storm]
    for span in spans:  # at each job's start, how many GPU jobs were running (itself too)
        running = [s for s in spans if s["start"] <= span["start"] < s["end"]]
        assert len(running) <= 3, running
        devices = [d for s in running for d in s["cuda"].split(",")]
        assert len(devices) == len(set(devices)), running  # never the same GPU twice
    assert jhub.usage("alice")["pools"]["nvidia-a100"]["used"] == 0


def test_from_a_sandbox_kernel_run_list_logs_and_cancel(jhub: HubProcess) -> None:
    out = run_in_kernel(jhub, "alice", "", """
%dsdata run train.ipynb --cpu 1 -p alpha=5 -p name=magic
import time
from server_ext import dsdata
[j] = [j for j in dsdata.jobs() if j['parameters'].get('name') == 'magic']
while dsdata.jobs()[0]['state'] not in ('succeeded', 'failed'): time.sleep(0.5)
%dsdata jobs
from server_ext.display import jobs_table
from server_ext import notebook_jobs
print(jobs_table(notebook_jobs.jobs()))
%dsdata logs {j['id'][:6]} -n 1
%dsdata run train.ipynb --profile gpu-a100 --gpus 4
%dsdata run ../../etc/x.ipynb
%dsdata cancel 0000
print('ID', j['id'])
""")  # fmt: skip
    assert "job " in out and "(train.ipynb -> jobs/" in out, out
    assert "succeeded" in out and "alpha=5" in out, out
    assert "dsplatform: the notebook ran to its end" in out, out
    assert ("dsdata run: GPU quota exceeded: ml-research allows 3 GPUs per user; running 0 + "
            "requested 4 = 4") in out, out  # fmt: skip
    assert "is not inside your workspace" in out and "names 0 of your jobs" in out, out
    job_id = out.split("ID ")[-1].split()[0]
    result = json.loads((workspace(jhub, "alice") / "result-magic.json").read_text())
    assert result["alpha"] == 5 and result["resources"]["cpu"] == 1

    # the sandbox REST front, and an attacker: carol's kernel, with her sandbox's own token
    spied = run_in_kernel(jhub, "carol", "", f"""
import os, urllib.request, urllib.error
api = os.environ['JUPYTERHUB_API_URL'] + '/dsplatform/jobs/{job_id}'
for method in ('GET', 'DELETE'):
    request = urllib.request.Request(api, method=method, headers={{
        'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}})
    try:
        urllib.request.urlopen(request)
        print(method, 'answered')
    except urllib.error.HTTPError as e:
        print(method, e.code)
request = urllib.request.Request(api + '/result', method='POST', data=b'{{"exit_code": 1}}',
                                 headers={{'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}})
try:
    urllib.request.urlopen(request)
except urllib.error.HTTPError as e:
    print('REPORT', e.code)
from server_ext import dsdata
print('MINE', dsdata.jobs())
""")  # fmt: skip
    assert "GET 404" in spied and "DELETE 404" in spied and "REPORT 404" in spied, spied
    assert job(jhub, "alice", job_id)["state"] == "succeeded"
    token = jhub.token_for("alice")
    rest = jhub.session.get(f"{jhub.url}/user/alice/dsdata/api/jobs/{job_id}/log?tail=1",
                            headers={"Authorization": f"token {token}"}, timeout=30)  # fmt: skip
    assert rest.status_code == 200 and "ran to its end" in rest.json()["log"], rest.text
    bad = jhub.session.post(f"{jhub.url}/user/alice/dsdata/api/jobs", json={"notebook": ""},
                            headers={"Authorization": f"token {token}"}, timeout=30)  # fmt: skip
    assert bad.status_code == 400, bad.text


def test_a_committed_job_is_an_experiment_run(jhub: HubProcess) -> None:
    r = submit(jhub, "carol", {"notebook": "timed.ipynb", "profile": "cpu-small",
                               "commit": True, "parameters": {"seconds": 0, "name": "run"}})  # fmt: skip
    assert r.status_code == 201, r.text
    done = wait_job(jhub, "carol", r.json()["id"])
    log = (workspace(jhub, "carol") / done["log"]).read_text()
    assert done["state"] == "succeeded", (done, log)
    assert "dsplatform: committed " in log, log
    out = run_in_kernel(jhub, "carol", "", "from server_ext import dsdata\n"
                        "print([(r['message'], r.get('params')) for r in dsdata.log(3)])\n")  # fmt: skip
    assert f"Notebook job {done['id']}: timed.ipynb" in out, out


@pytest.mark.lab
def test_the_lab_command_runs_the_open_notebook_as_a_job(jhub: HubProcess) -> None:
    """ "Run Notebook as a Job…" in chromium, with train.ipynb open: the dialog proposes it,
    the job runs with the parameters typed in the dialog."""
    from .test_lab_e2e import hub_story

    summary = hub_story("hub-jobs.mjs", jhub, {"NOTEBOOK": "train.ipynb"})
    assert summary["proposed"] == "train.ipynb", summary
    assert summary["toast"].startswith("Job "), summary
    job_id = summary["toast"].split()[1].rstrip(":")
    done = wait_job(jhub, "alice", job_id)
    assert done["state"] == "succeeded" and done["parameters"] == {"alpha": 7, "name": "lab"}
    result = json.loads((workspace(jhub, "alice") / "result-lab.json").read_text())
    assert result["alpha"] == 7 and result["resources"]["cpu"] == 1


def test_a_hub_restart_keeps_a_running_job_accounted(jhub: HubProcess) -> None:
    r = submit(jhub, "alice", {"notebook": "timed.ipynb", "profile": "cpu-small", "cpu": 2,
                               "parameters": {"seconds": 25, "name": "restart"}})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    wait_job(jhub, "alice", job_id, ("running",))
    assert jhub.usage("alice")["usage"]["cpu"] == 2.5
    jhub.stop()
    jhub.start()
    assert jhub.usage("alice")["usage"]["cpu"] == 2.5  # held once, not twice, not dropped
    assert job(jhub, "alice", job_id)["state"] == "running"
    done = wait_job(jhub, "alice", job_id)
    assert done["state"] == "succeeded" and done["exit_code"] == 0, done  # the runner's report
    deadline = time.monotonic() + 30
    while jhub.usage("alice")["usage"]["cpu"] != 0.5:
        assert time.monotonic() < deadline, jhub.usage("alice")
        time.sleep(0.5)
