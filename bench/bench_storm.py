"""Spawn storm: 200 users ask for 8 GPUs at the same moment, through a real hub.

A real JupyterHub (``tests.hub.HubProcess``, the embedded config plus a site config) offers
8 device ids of GPU type ``nvidia-a100`` (``pools = {"nvidia-a100": 8}``) and a profile
``storm-gpu`` with gpu fixed at 1, cpu 0.5, memory 1G to the group ``storm``: 200 users,
each allowed 1 GPU, 1 server and 10 GPU-hours a week. After every user has a token, 200
threads fire ``POST /hub/api/users/{u}/server`` together. Meanwhile a separate process
times ``GET /hub/api/`` and ``GET /hub/api/dsplatform/usage`` every 20 ms (also for a few
seconds before the storm, as the idle baseline) and records the GPUs in use that the usage
API reports.

Reported: servers started (expected 8, the pool), overshoot = max(0, started - 8), the
maximum GPUs in use seen by the usage API, the histogram of POST statuses (refusals should
be 503 ``capacity``), and p50/p99 hub API latency idle and during the storm. Then every
server is stopped and the pool must read 0 used again.

    .venv/bin/python -m bench.bench_storm [--users 200] [--gpus 8] [--interval 0.02]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from tests.hub import HubProcess

from .common import (
    OtherLoad,
    cpu_contention,
    log,
    result_header,
    summarize,
    table,
    write_result,
)

NAME = "bench_storm"
PROFILE = "storm-gpu"
OBSERVER = "observer"


def site_config(users: list[str], gpus: int) -> str:
    devices = [str(i) for i in range(gpus)]
    return f"""
c.ProfileSpawner.toolchains = {{"scipy": {{"local_python": None}}}}
c.ProfileSpawner.profiles = [
    {{"slug": "cpu-small", "toolchain": "scipy", "cpu": {{"default": 1, "min": 0.5, "max": 2}},
     "memory": {{"default": "1G", "max": "2G"}}, "groups": ["*"], "idle_timeout": 3600}},
    {{"slug": {PROFILE!r}, "toolchain": "scipy", "gpu_type": "nvidia-a100", "gpu": 1,
     "cpu": 0.5, "memory": "1G", "groups": ["storm"], "idle_timeout": 1800}},
]
c.QuotaPolicy.default = {{"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0,
                         "gpu_hours_per_week": 0}}
c.QuotaPolicy.groups = {{"storm": {{"servers": 1, "gpus": 1, "gpu_hours_per_week": 10}}}}
c.QuotaPolicy.users = {{}}
c.QuotaPolicy.group_pools = {{}}
c.QuotaPolicy.pools = {{"nvidia-a100": {gpus}}}
c.LocalProfileSpawner.gpu_devices = {{"nvidia-a100": {devices!r}}}
c.JupyterHub.load_groups = {{"storm": {{"users": {users!r}}}}}
"""


def probe(
    api_url: str,
    token: str,
    interval: float,
    stop: Any,
    out: Any,
) -> None:
    """Child process: time both endpoints every ``interval`` s until ``stop`` is set."""
    session = requests.Session()
    headers = {"Authorization": f"token {token}"}
    samples: list[tuple[float, str, float, int, int | None]] = []
    next_tick = time.monotonic()
    while not stop.is_set():
        for endpoint, url, hdrs in (
            ("api", f"{api_url}/", {}),
            ("usage", f"{api_url}/dsplatform/usage", headers),
        ):
            t0 = time.monotonic()
            used = None
            try:
                r = session.get(url, headers=hdrs, timeout=30)
                status = r.status_code
                if endpoint == "usage" and status == 200:
                    used = r.json()["pools"]["nvidia-a100"]["used"]
            except requests.RequestException:
                status = -1
            samples.append((t0, endpoint, time.monotonic() - t0, status, used))
        next_tick += interval
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()  # fell behind: closed loop, no burst to catch up
    out.put(samples)


def fire(
    hub: HubProcess, users: list[str], tokens: dict[str, str], timeout: float
) -> list[dict[str, Any]]:
    """POST every user's server from its own thread, all released at once."""
    barrier = threading.Barrier(len(users))

    def one(user: str) -> dict[str, Any]:
        session = requests.Session()
        headers = {"Authorization": f"token {tokens[user]}"}
        url = f"{hub.api_url}/users/{user}/server"
        barrier.wait()
        t0 = time.monotonic()
        try:
            r = session.post(url, headers=headers, json={"profile": PROFILE}, timeout=timeout)
            status, text = r.status_code, r.text
        except requests.RequestException as e:
            status, text = -1, repr(e)
        message = text
        if status > 0:
            with contextlib.suppress(ValueError):
                message = r.json().get("message", text)
        return {
            "user": user,
            "t0": t0,
            "status": status,
            "latency_s": time.monotonic() - t0,
            "message": message[:300],
        }

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        futures = [pool.submit(one, u) for u in users]
        return [f.result() for f in futures]


_LATE = re.compile(r"Not starting (\S+)'s server : (\d+) SpawnException\(reason=(\w+)\)")


def late_refusals(log_text: str) -> dict[str, tuple[int, str]]:
    """user -> (status, reason) of every refusal the hub logged from ``Spawner.start``."""
    return {m.group(1): (int(m.group(2)), m.group(3)) for m in _LATE.finditer(log_text)}


def servers(hub: HubProcess) -> dict[str, dict[str, Any]]:
    """Every user's default server model (admin view)."""
    out = {}
    for model in hub.api("GET", "/users", timeout=60).json():
        server = model.get("servers", {}).get("")
        if server is not None:
            out[model["name"]] = server
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="storm group size")
    parser.add_argument("--gpus", type=int, default=8, help="device ids = pool size")
    parser.add_argument("--interval", type=float, default=0.02, help="probe period (s)")
    parser.add_argument("--baseline", type=float, default=3.0, help="idle probing first (s)")
    parser.add_argument("--timeout", type=float, default=150, help="storm limit (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp state dir")
    args = parser.parse_args(argv)

    contention = cpu_contention()
    others = OtherLoad()
    users = [f"storm{i:03d}" for i in range(args.users)]
    base = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    hub = HubProcess(base, site_config(users, args.gpus))
    ctx = mp.get_context("fork")  # before any thread exists in this process
    stop = ctx.Event()
    queue: Any = ctx.Queue()
    prober: Any = None
    phases: dict[str, float] = {}
    after: dict[str, Any] = {}
    refused_in_start: dict[str, tuple[int, str]] = {}
    try:
        t0 = time.perf_counter()
        hub.start(timeout=90)
        log(f"bench_storm: hub up in {time.perf_counter() - t0:.1f}s; creating tokens")
        t0 = time.perf_counter()
        tokens = {u: hub.token_for(u) for u in users}
        observer_token = hub.token_for(OBSERVER)
        log(f"bench_storm: {len(tokens)} tokens in {time.perf_counter() - t0:.1f}s")

        prober = ctx.Process(
            target=probe, args=(hub.api_url, observer_token, args.interval, stop, queue)
        )
        prober.start()
        phases["baseline_start"] = time.monotonic()
        time.sleep(args.baseline)
        log(f"bench_storm: firing {len(users)} spawns")
        phases["storm_start"] = time.monotonic()
        posts = fire(hub, users, tokens, args.timeout)
        phases["posts_done"] = time.monotonic()
        # the storm lasts until no server is pending any more
        deadline = time.monotonic() + args.timeout
        while True:
            models = servers(hub)
            pending = [u for u, m in models.items() if m.get("pending")]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        phases["storm_end"] = time.monotonic()
        time.sleep(0.5)
        stop.set()
        samples = queue.get(timeout=60)
        prober.join(timeout=30)

        models = servers(hub)
        started = sorted(u for u, m in models.items() if m.get("ready") or m.get("pending"))
        ready = sorted(u for u, m in models.items() if m.get("ready"))
        usage_end = hub.usage(OBSERVER)
        after["pool_while_running"] = usage_end["pools"]["nvidia-a100"]
        log(f"bench_storm: {len(started)} started; stopping all servers")
        t0 = time.perf_counter()
        hub.stop_all_servers()
        after["stop_all_s"] = time.perf_counter() - t0
        after["pool_after_stop"] = hub.usage(OBSERVER)["pools"]["nvidia-a100"]
    finally:
        if prober is not None and prober.is_alive():
            stop.set()
            prober.join(timeout=10)
            if prober.is_alive():
                prober.kill()
        try:
            hub.stop_all_servers()
        except Exception as e:
            log(f"bench_storm: stopping servers failed: {e}")
        hub.stop()
        refused_in_start = late_refusals(hub.log_path.read_text(errors="replace"))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    histogram: dict[str, int] = {}
    examples: dict[str, str] = {}
    for p in posts:
        key = str(p["status"])
        histogram[key] = histogram.get(key, 0) + 1
        examples.setdefault(key, p["message"])
    accepted = [p for p in posts if p["status"] in (201, 202)]
    # accepted (201/202) by the hub, then refused by admission after the POST had answered
    accepted_then_refused = sorted(
        p["user"] for p in accepted if p["user"] in refused_in_start and p["user"] not in started
    )
    late_reasons: dict[str, int] = {}
    for user in accepted_then_refused:
        key = f"{refused_in_start[user][0]} {refused_in_start[user][1]}"
        late_reasons[key] = late_reasons.get(key, 0) + 1

    def latencies(endpoint: str, start: float, end: float) -> list[float]:
        return [s[2] * 1000 for s in samples if s[1] == endpoint and start <= s[0] < end]

    storm = (phases["storm_start"], phases["storm_end"])
    idle = (phases["baseline_start"], phases["storm_start"])
    lat = {
        f"{endpoint}_{phase}_ms": summarize(latencies(endpoint, *window))
        for endpoint in ("api", "usage")
        for phase, window in (("idle", idle), ("storm", storm))
    }
    probe_errors = sum(1 for s in samples if s[3] != 200)
    used_seen = [s[4] for s in samples if s[4] is not None]
    max_used = max(used_seen) if used_seen else None
    overshoot = max(0, len(started) - args.gpus)
    storm_s = phases["storm_end"] - phases["storm_start"]
    posts_s = phases["posts_done"] - phases["storm_start"]

    print(f"\nSpawn storm: {len(users)} users x 1 GPU, pool of {args.gpus} (nvidia-a100)")
    print(
        table(
            ["started", "ready", "expected", "overshoot", "max GPUs used (usage API)",
             "GPUs used after stop", "POST statuses"],
            [[len(started), len(ready), args.gpus, overshoot, max_used,
              after["pool_after_stop"]["used"], histogram]],
        )
    )  # fmt: skip
    print(
        f"storm: all POSTs answered in {posts_s:.2f}s, no server pending after {storm_s:.2f}s; "
        f"POST latency p50 {summarize([p['latency_s'] for p in posts])['p50']:.3f}s, "
        f"accepted {len(accepted)}"
    )
    if accepted_then_refused:
        print(
            f"{len(accepted_then_refused)} POSTs answered 202 and were refused afterwards in "
            f"Spawner.start (hub log: {late_reasons}); the client saw no 4xx/5xx for them"
        )
    print("\nHub API latency (ms), polled every", f"{args.interval * 1000:.0f} ms")
    print(
        table(
            ["endpoint", "phase", "n", "p50", "p99", "max"],
            [
                [endpoint, phase, s["n"], s["p50"], s["p99"], s["max"]]
                for key, s in lat.items()
                for endpoint, phase in [key.removesuffix("_ms").split("_")]
            ],
        )
    )
    for status, message in sorted(examples.items()):
        print(f"  {status}: {message[:160]}")
    result = {
        **result_header(NAME, vars(args), contention, others),
        "started": len(started),
        "ready": len(ready),
        "expected": args.gpus,
        "overshoot": overshoot,
        "max_gpus_used_seen": max_used,
        "pool_while_running": after.get("pool_while_running"),
        "pool_after_stop": after.get("pool_after_stop"),
        "stop_all_s": after.get("stop_all_s"),
        "status_histogram": histogram,
        "status_examples": examples,
        "accepted_then_refused": len(accepted_then_refused),
        "accepted_then_refused_reasons": late_reasons,
        "refused_in_start_total": len(refused_in_start),
        "posts_answered_s": posts_s,
        "storm_s": storm_s,
        "post_latency_s": summarize([p["latency_s"] for p in posts]),
        "latency": lat,
        "probe_samples": len(samples),
        "probe_errors": probe_errors,
        "fired_spread_s": max(p["t0"] for p in posts) - min(p["t0"] for p in posts),
        "meets_goal": overshoot == 0 and len(started) == args.gpus,
    }
    path = write_result(NAME, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
