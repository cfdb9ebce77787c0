"""Prediction latency and throughput: the catalog gateway vs ``mlflow models serve``.

One real hub (``tests.hub.HubProcess``: embedded config, local mode as root, the hub-managed
MLflow server and catalog service, a site config adding a ``product`` group with user
``bench`` and reviewer ``rita``) and one small scikit-learn model (``LogisticRegression`` on a
2-column float DataFrame, published with ``server_ext.models.ModelService`` as ``bench``,
then promoted to the protected alias ``production`` through the catalog: ``bench`` requests,
``rita`` approves). Both sides get the same JSON payload (``dataframe_split``, ``--rows``
rows) from the same client (``requests``, one keep-alive session per thread):

* gateway: ``POST {hub}/services/catalog/api/models/NAME/production/predict`` through
  configurable-http-proxy, with a hub token holding ``custom:dsplatform:predict`` and
  ``access:services!service=catalog``; the catalog forwards it to the version's serving
  worker (its own process, as the serving account, over a Unix socket);
* anchor: ``mlflow models serve -m models:/NAME@production --env-manager local`` (its
  ``/invocations``, default worker count), started in the same run.

Latency: ``--latency-requests`` sequential requests per round (p50/p99). Throughput:
``--threads`` client threads for ``--seconds`` per round (requests/s). Rounds alternate
(ABBA, ``--rounds``); the throughput ratio gateway/anchor is reported (goal >= 0.8).
Monitoring: a second hub with ``c.PlatformMonitoring.enabled = False`` serves the same model
("unmonitored"), measured in the same rounds: the throughput lost to metrics and input
sampling (goal <= 5 %).
Cold start: the gateway's first prediction after the promotion (the version's files
downloaded, its worker started, the model loaded), and the anchor's start until its first
answer (process start, model download and load).

    .venv/bin/python -m bench.bench_predict [--rounds 2] [--threads 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import TEST_POLICY
from tests.hub import HubProcess, free_port

from .common import OtherLoad, cpu_contention, log, machine_info, summarize, table, write_result

MODEL = "bench-predict-lr"
SCOPES = ["custom:dsplatform:predict", "access:services!service=catalog"]
SITE = (
    TEST_POLICY
    + """
c.JupyterHub.load_groups = {"product": {"users": ["bench"]}, "ml-research": {"users": ["alice"]},
                            "model-reviewers": {"users": ["rita"]}}
c.ModelGovernance.protected_aliases = ["production"]
c.ModelGovernance.approver_groups = ["model-reviewers"]
"""
)
GOAL = 0.8
MONITORING_GOAL = 0.05  # throughput lost to metrics and input sampling
APPROVER = ["custom:dsplatform:approve", "access:services!service=catalog"]


def promote(hub: HubProcess, version: int, owner: str, approver: str) -> None:
    """``production`` -> ``version``: the owner asks, the reviewer approves."""
    catalog = f"{hub.url}/services/catalog/api/models/{MODEL}"
    r = requests.post(f"{catalog}/promotions", json={"version": version, "alias": "production"},
                      headers={"Authorization": f"token {owner}"}, timeout=60)  # fmt: skip
    if r.status_code != 201:
        raise RuntimeError(f"promotion request: {r.status_code} {r.text[:300]}")
    r = requests.post(f"{catalog}/promotions/{r.json()['id']}/approve", json={"override": True,
                      "reason": "benchmark model"},  # no lineage: it is not a git project
                      headers={"Authorization": f"token {approver}"}, timeout=60)  # fmt: skip
    if r.status_code != 200:
        raise RuntimeError(f"approval: {r.status_code} {r.text[:300]}")
    log(f"production -> v{version}, approved by rita")


def train() -> Any:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["x1", "x2"])
    return LogisticRegression().fit(x, (x["x1"] + x["x2"] > 0).astype(int))


def payload(rows: int) -> bytes:
    import json

    import numpy as np

    data = np.random.default_rng(1).normal(size=(rows, 2)).round(6).tolist()
    return json.dumps({"dataframe_split": {"columns": ["x1", "x2"], "data": data}}).encode()


class Target:
    def __init__(self, name: str, url: str, headers: dict[str, str]) -> None:
        self.name, self.url = name, url
        self.headers = {"Content-Type": "application/json", **headers}

    def call(self, session: requests.Session, body: bytes) -> None:
        r = session.post(self.url, data=body, headers=self.headers, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"{self.name}: {r.status_code} {r.text[:300]}")


def latency(target: Target, body: bytes, n: int) -> list[float]:
    out = []
    with requests.Session() as s:
        for _ in range(n):
            t = time.perf_counter()
            target.call(s, body)
            out.append((time.perf_counter() - t) * 1000)
    return out


def throughput(target: Target, body: bytes, threads: int, seconds: float) -> dict[str, Any]:
    counts = [0] * threads
    errors: list[str] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        with requests.Session() as s:
            target.call(s, body)  # connect outside the window
            start.wait()
            while time.perf_counter() < stop_at[0]:
                try:
                    target.call(s, body)
                except Exception as e:
                    errors.append(str(e))
                    return
                counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{target.name}: {errors[0]}")
    return {"requests": sum(counts), "seconds": elapsed, "rps": sum(counts) / elapsed}


def start_anchor(
    tracking_uri: str, token: str, base: Path
) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    log_file = open(base / "mlflow-serve.log", "ab")  # noqa: SIM115  (the child keeps it)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@production",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_TRACKING_TOKEN": token,  # the platform's MLflow knows callers by hub token
            # it execs uvicorn from PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited {proc.returncode}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return proc, url, time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError("mlflow models serve did not answer in 120 s")


def catalog_cpu(hub: HubProcess) -> float:
    """CPU seconds used so far by the hub's catalog service process (from /proc)."""
    assert hub.proc is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == hub.proc.pid and b"hub_ext.services.catalog" in cmdline:
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def gateway(hub: HubProcess, root: Path) -> tuple[Target, float]:
    """Publish and promote the model on ``hub``; its gateway target and cold start."""
    from server_ext.experiments import ExperimentService
    from server_ext.models import ModelService

    hub.wait_mlflow()
    root.mkdir()
    with open(root / "model.pkl", "wb") as f:
        pickle.dump(train(), f)
    service = ModelService(ExperimentService(root=root, tracking_uri=hub.mlflow_url, user="bench"))
    with hub.mlflow_as("bench"):
        published = service.publish(MODEL, path="model.pkl")
    log(f"published {published['uri']} (version {published['version']})")
    token = hub.scoped_token("bench", SCOPES)
    promote(hub, published["version"], token, hub.scoped_token("rita", APPROVER))
    url = f"{hub.url}/services/catalog/api/models/{MODEL}/production/predict"
    t = time.perf_counter()  # the worker's cold start: files, process, model load
    r = requests.post(url, data=payload(8), timeout=180,
                      headers={"Authorization": f"token {token}",
                               "Content-Type": "application/json"})  # fmt: skip
    cold = time.perf_counter() - t
    if r.status_code != 200:
        raise RuntimeError(f"gateway cold call: {r.status_code} {r.text[:300]}")
    return Target("gateway", url, {"Authorization": f"token {token}"}), cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per side")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()

    contention = cpu_contention()
    base = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    hub = HubProcess(base / "hub", SITE).start()
    quiet = HubProcess(base / "hub-off", SITE + "c.PlatformMonitoring.enabled = False\n")
    anchor_proc = None
    names = ("anchor", "gateway", "unmonitored")
    try:
        quiet.start()
        targets: dict[str, Target] = {}
        targets["gateway"], cold_gateway = gateway(hub, base / "project")
        log(f"gateway cold start (first prediction) {cold_gateway:.2f} s")
        targets["unmonitored"], _ = gateway(quiet, base / "project-off")
        targets["unmonitored"].name = "unmonitored"
        anchor_proc, anchor_url, cold_anchor = start_anchor(
            hub.mlflow_url, hub.token_for("bench"), base
        )
        log(f"anchor cold start (process to first answer) {cold_anchor:.2f} s")
        targets["anchor"] = Target("anchor", f"{anchor_url}/invocations", {})
        body = payload(args.rows)
        with requests.Session() as s:  # warm-up: model loads, connections, caches
            for t in targets.values():
                for _ in range(20):
                    t.call(s, body)

        lat: dict[str, list[float]] = {name: [] for name in names}
        tput: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        load = OtherLoad()
        hubs = {"gateway": hub, "unmonitored": quiet}
        for i in range(args.rounds):
            order = list(names) if i % 2 == 0 else list(reversed(names))
            for name in order:
                lat[name] += latency(targets[name], body, args.latency_requests)
                cpu = catalog_cpu(hubs[name]) if name in hubs else 0.0
                tput[name].append(throughput(targets[name], body, args.threads, args.seconds))
                if name in hubs:  # the catalog's own CPU per request, where monitoring runs
                    used = catalog_cpu(hubs[name]) - cpu
                    tput[name][-1]["catalog_cpu_ms_per_request"] = (
                        1000 * used / max(1, tput[name][-1]["requests"])
                    )
                log(
                    f"round {i} {name}: p50 {summarize(lat[name])['p50']:.2f} ms, "
                    f"{tput[name][-1]['rps']:.0f} req/s"
                )
        during = load.stop()
    finally:
        if anchor_proc is not None:
            anchor_proc.terminate()
            try:
                anchor_proc.wait(30)
            except subprocess.TimeoutExpired:
                anchor_proc.kill()
        hub.stop()
        quiet.stop()

    stats = {}
    for name in names:
        total = sum(t["requests"] for t in tput[name])
        secs = sum(t["seconds"] for t in tput[name])
        stats[name] = {
            "latency_ms": summarize(lat[name]),
            "rps": total / secs,
            "rounds": tput[name],
        }
    ratio = stats["gateway"]["rps"] / stats["anchor"]["rps"]
    monitoring_cost = 1 - stats["gateway"]["rps"] / stats["unmonitored"]["rps"]
    what = {
        "anchor": "mlflow models serve",
        "gateway": "hub proxy + catalog service",
        "unmonitored": "the same, c.PlatformMonitoring.enabled = False",
    }
    rows = [
        (
            f"{name} ({what[name]})",
            stats[name]["latency_ms"]["p50"],
            stats[name]["latency_ms"]["p99"],
            stats[name]["rps"],
            f"{stats[name]['rps'] / stats['anchor']['rps']:.2f}",
        )
        for name in names
    ]
    print(table(["target", "p50 ms", "p99 ms", f"req/s ({args.threads} threads)", "ratio"], rows))
    print(
        f"\nthroughput ratio gateway/anchor {ratio:.2f} (goal >= {GOAL}): "
        f"{'meets goal' if ratio >= GOAL else 'misses goal'}"
    )
    cpu_ms = {
        name: sum(r["catalog_cpu_ms_per_request"] for r in tput[name]) / len(tput[name])
        for name in ("gateway", "unmonitored")
    }
    print(
        f"catalog CPU per request: monitored {cpu_ms['gateway']:.2f} ms, unmonitored "
        f"{cpu_ms['unmonitored']:.2f} ms"
    )
    print(
        f"monitoring (metrics + input sampling) costs {100 * monitoring_cost:.1f} % of the "
        f"gateway's throughput (goal <= {100 * MONITORING_GOAL:.0f} %): "
        f"{'meets goal' if monitoring_cost <= MONITORING_GOAL else 'misses goal'}"
    )
    print(
        f"cold start: gateway first prediction {cold_gateway:.2f} s (download, worker start, "
        f"model load); mlflow models serve to first answer {cold_anchor:.2f} s"
    )
    write_result(
        "bench_predict",
        {
            "params": vars(args),
            "payload_bytes": len(body),
            "stats": stats,
            "ratio_rps": ratio,
            "ratio_p50": stats["gateway"]["latency_ms"]["p50"]
            / stats["anchor"]["latency_ms"]["p50"],
            "monitoring_cost_rps": monitoring_cost,
            "catalog_cpu_ms_per_request": cpu_ms,
            "goal": {"rps_ratio": GOAL, "monitoring_cost": MONITORING_GOAL},
            "cold_start_s": {
                "gateway_first_prediction": cold_gateway,
                "anchor_process_to_first_answer": cold_anchor,
            },
            "meets_goal": ratio >= GOAL and monitoring_cost <= MONITORING_GOAL,
            "machine": machine_info(),
            "contention_before": contention,
            "contention_during": during,
        },
    )


if __name__ == "__main__":
    main()
