"""Spawn-to-ready time through the hub: dsplatform-local vs JupyterHub's SimpleLocalProcessSpawner.

Two real hubs (configurable-http-proxy, real single-user JupyterLab servers) run side by
side for the whole run:

* ``dsplatform``: the embedded ``jupyterhub_config.py`` through ``tests.hub.HubProcess``;
  each spawn asks for profile ``cpu-small`` (its defaults: 1 CPU, 2G), so it goes through
  the profile/quota admission, the ledger and the local OS limits.
* ``anchor``: ``bench/anchor_jupyterhub_config.py``, a plain hub with
  ``SimpleLocalProcessSpawner`` and the same proxy, interpreter and single-user defaults.

Spawns alternate between the two (ABBA order, after one untimed warm-up spawn each). A
spawn is timed from ``POST /hub/api/users/{u}/server`` until ``GET /hub/api/users/{u}``
(polled every 50 ms) reports the server ``ready``; then the server is stopped and the next
spawn starts once it is gone. Goal: median(dsplatform) / median(anchor) <= 1.05.

    .venv/bin/python -m bench.bench_spawn [--rounds 7] [--poll 0.05]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.hub import ADMIN_TOKEN, REPO, HubProcess
from tests.processes import answers, launch, wait_ready

from .common import (
    OtherLoad,
    cpu_contention,
    log,
    result_header,
    summarize,
    table,
    write_result,
)

NAME = "bench_spawn"
GOAL_RATIO = 1.05
ANCHOR_CONFIG = REPO / "bench" / "anchor_jupyterhub_config.py"


class AnchorHub(HubProcess):
    """A plain JupyterHub (bench/anchor_jupyterhub_config.py) with HubProcess's API helpers."""

    def write_config(self) -> Path:
        return ANCHOR_CONFIG

    def start(self, timeout: float = 60) -> AnchorHub:
        env = {
            **os.environ,
            "BENCH_STATE_DIR": str(self.state / "anchor"),
            "BENCH_PORT": str(self.port),
            "BENCH_HUB_PORT": str(self.hub_port),
            "BENCH_PROXY_API_PORT": str(self.proxy_api_port),
            "BENCH_ADMIN_TOKEN": ADMIN_TOKEN,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.env,
        }
        self.proc = launch(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.write_config())],
            log_path=self.log_path,
            cwd=self.state,
            env=env,
        )
        wait_ready(
            self.proc,
            lambda: answers(f"{self.api_url}/", session=self.session),
            "anchor hub",
            timeout,
            self.log,
        )
        return self


_STAMP = re.compile(r"^\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def log_phases(log_text: str, skip: int) -> dict[str, list[float]]:
    """Per spawn, from the hub log (the single-user server logs into it), in seconds:

    * ``pre_spawn``: "Creating oauth client" (start of ``User.spawn``) to "Spawning ..."
      (the process is forked): the hub's and the spawner's own work, admission included;
    * ``process_up``: "Spawning ..." to the server's "Serving notebooks";
    * ``detect``: "Serving notebooks" to the hub's "took N seconds to start": JupyterHub's
      readiness check, an exponential backoff with full jitter (up to 5 s between tries).

    The first ``skip`` spawns (warm-ups) are left out.
    """
    marks: dict[str, dt.datetime] = {}
    out: dict[str, list[float]] = {"pre_spawn": [], "process_up": [], "detect": []}
    count = 0
    for line in log_text.splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if "Creating oauth client" in line:
            marks = {"begin": when}
        elif "Spawning" in line and "jupyterhub.singleuser" in line:
            marks["spawning"] = when
        elif "Serving notebooks from local directory" in line:
            marks["serving"] = when
        elif "seconds to start" in line and len(marks) == 3:
            count += 1
            if count > skip:
                out["pre_spawn"].append((marks["spawning"] - marks["begin"]).total_seconds())
                out["process_up"].append((marks["serving"] - marks["spawning"]).total_seconds())
                out["detect"].append((when - marks["serving"]).total_seconds())
            marks = {}
    return out


def spawn_once(
    hub: HubProcess, user: str, options: dict[str, Any], poll: float, timeout: float
) -> dict[str, Any]:
    """POST the spawn, poll the user model until ready, stop the server; times in seconds."""
    hub.token_for(user)  # token created outside the timed region
    t0 = time.perf_counter()
    r = hub.spawn(user, "", options)
    posted = time.perf_counter() - t0
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn refused: {r.status_code} {r.text}")
    polls = 0
    deadline = t0 + timeout
    while True:
        model = hub.server_model(user)
        polls += 1
        if model and model.get("ready"):
            ready = time.perf_counter() - t0
            break
        if model is None:
            raise RuntimeError(f"{user}'s server is gone while starting:\n{hub.log()}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{user}'s server not ready after {timeout}s:\n{hub.log()}")
        time.sleep(poll)
    t1 = time.perf_counter()
    hub.stop_server(user, "", timeout=timeout)
    stopped = time.perf_counter() - t1
    return {
        "ready_s": ready,
        "post_s": posted,
        "post_status": r.status_code,
        "polls": polls,
        "stop_s": stopped,
    }


def time_account_creation(count: int) -> list[float]:
    """What ``useradd`` costs a first spawn: the spawner's own ensure_account, timed."""
    from hub_ext.spawners.accounts import account_name, ensure_account

    times = []
    for i in range(count):
        name = account_name("dspbench-{username}", f"a{i}-{os.getpid()}")
        t0 = time.perf_counter()
        ensure_account(name, Path("/nonexistent"), "bench_spawn", (20000, 29999))
        times.append(time.perf_counter() - t0)
        subprocess.run(["userdel", name], capture_output=True)
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed spawns per hub (>= 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed spawns per hub first")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls")
    parser.add_argument("--settle", type=float, default=0.5, help="pause after each stop")
    parser.add_argument("--timeout", type=float, default=120, help="per-spawn limit (s)")
    parser.add_argument("--user", default="bench", help="user name on both hubs")
    parser.add_argument("--keep", action="store_true", help="keep the temp state dirs")
    parser.add_argument("--first-spawns", type=int, default=3,
                        help="first spawns of new users (account creation included)")  # fmt: skip
    args = parser.parse_args(argv)

    contention = cpu_contention()
    others = OtherLoad()
    base = Path(tempfile.mkdtemp(prefix="bench-spawn-"))
    hubs: dict[str, HubProcess] = {}
    options = {"dsplatform": {"profile": "cpu-small"}, "anchor": {}}
    startup: dict[str, float] = {}
    samples: dict[str, list[dict[str, Any]]] = {"dsplatform": [], "anchor": []}
    phases: dict[str, dict[str, list[float]]] = {}
    first_spawns: list[dict[str, Any]] = []
    account_s: list[float] = []
    try:
        for name, cls in (("dsplatform", HubProcess), ("anchor", AnchorHub)):
            t0 = time.perf_counter()
            hubs[name] = cls(base / name).start(timeout=90)
            startup[name] = time.perf_counter() - t0
            log(f"bench_spawn: {name} hub up in {startup[name]:.1f}s at {hubs[name].url}")
        for name, hub in hubs.items():
            for _ in range(args.warmup):
                spawn_once(hub, args.user, options[name], args.poll, args.timeout)
                time.sleep(args.settle)
        for i in range(args.rounds):
            order = ["dsplatform", "anchor"] if i % 2 == 0 else ["anchor", "dsplatform"]
            for name in order:
                sample = spawn_once(hubs[name], args.user, options[name], args.poll, args.timeout)
                sample["round"] = i
                samples[name].append(sample)
                log(f"  round {i} {name:>10}: ready in {sample['ready_s']:.3f}s")
                time.sleep(args.settle)
        # a user's first spawn also creates their unix account (the hub runs as root)
        for i in range(args.first_spawns if os.geteuid() == 0 else 0):
            user = f"{args.user}-first{i}-{os.getpid()}"
            sample = spawn_once(hubs["dsplatform"], user, options["dsplatform"], args.poll,
                                args.timeout)  # fmt: skip
            first_spawns.append(sample)
            log(f"  first spawn of {user}: ready in {sample['ready_s']:.3f}s")
            time.sleep(args.settle)
        account_s = time_account_creation(args.first_spawns) if os.geteuid() == 0 else []
    finally:
        for name, hub in hubs.items():
            try:
                hub.stop_all_servers()
            except Exception as e:  # report, keep stopping the rest
                log(f"bench_spawn: stopping servers failed: {e}")
            hub.stop()
            text = hub.log_path.read_text(errors="replace") if hub.log_path.exists() else ""
            phases[name] = log_phases(text, args.warmup)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    stats = {
        name: {
            "ready_s": summarize([s["ready_s"] for s in samples[name]]),
            "post_s": summarize([s["post_s"] for s in samples[name]]),
            "stop_s": summarize([s["stop_s"] for s in samples[name]]),
            "post_status": sorted({s["post_status"] for s in samples[name]}),
            "pre_spawn_s": summarize(phases.get(name, {}).get("pre_spawn", [])),
            "process_up_s": summarize(phases.get(name, {}).get("process_up", [])),
            "detect_s": summarize(phases.get(name, {}).get("detect", [])),
        }
        for name in samples
    }
    ratio = stats["dsplatform"]["ready_s"]["p50"] / stats["anchor"]["ready_s"]["p50"]
    ratio_p90 = stats["dsplatform"]["ready_s"]["p90"] / stats["anchor"]["ready_s"]["p90"]
    print("\nSpawn-to-ready through the hub (seconds; POST -> server model ready)")
    print(
        table(
            [
                "hub",
                "n",
                "median",
                "p90",
                "min",
                "max",
                "pre-spawn",
                "proc-up",
                "detect",
                "stop",
            ],
            [
                [
                    name,
                    stats[name]["ready_s"]["n"],
                    stats[name]["ready_s"]["p50"],
                    stats[name]["ready_s"]["p90"],
                    stats[name]["ready_s"]["min"],
                    stats[name]["ready_s"]["max"],
                    stats[name]["pre_spawn_s"]["p50"],
                    stats[name]["process_up_s"]["p50"],
                    stats[name]["detect_s"]["p50"],
                    stats[name]["stop_s"]["p50"],
                ]
                for name in ("dsplatform", "anchor")
            ],
        )
    )
    print(
        f"\nratio dsplatform/anchor: median {ratio:.3f}, p90 {ratio_p90:.3f} "
        f"(goal median ratio <= {GOAL_RATIO})"
    )
    up_ratio = stats["dsplatform"]["process_up_s"]["p50"] / stats["anchor"]["process_up_s"]["p50"]
    print(
        "pre-spawn, proc-up, detect, stop: medians from the hub log (User.spawn -> fork -> "
        "'Serving notebooks' -> hub sees it ready) and of the DELETE"
    )
    print(
        f"proc-up median ratio {up_ratio:.3f}; 'detect' is JupyterHub's jittered readiness "
        "backoff, the main source of noise in 'median'"
    )
    if first_spawns:
        first = [s["ready_s"] for s in first_spawns]
        print(
            f"first spawn of a new user (its account created): median {sorted(first)[len(first) // 2]:.3f}s "
            f"vs {stats['dsplatform']['ready_s']['p50']:.3f}s later; useradd itself "
            f"{sorted(account_s)[len(account_s) // 2] * 1000:.0f} ms (median of {len(account_s)})"
        )
    result = {
        **result_header(NAME, vars(args), contention, others),
        "goal": {"median_ratio": GOAL_RATIO},
        "isolation": "dsplatform sandboxes as their own accounts, one cgroup each (hub as root)"
        if os.geteuid() == 0
        else "none (hub not root)",
        "first_spawns": first_spawns,
        "account_creation_s": account_s,
        "hub_startup_s": startup,
        "stats": stats,
        "samples": samples,
        "ratio_median": ratio,
        "ratio_p90": ratio_p90,
        "process_up_ratio_median": up_ratio,
        "meets_goal": ratio <= GOAL_RATIO,
    }
    path = write_result(NAME, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
