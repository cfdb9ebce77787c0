"""Spawn-to-ready in Kubernetes mode: dsplatform-kube vs plain KubeSpawner, same emulator.

One Kubernetes-API emulator (``tests/kube_emulator``: its kubelet runs each pod's real
``jupyterhub-singleuser`` on its own loopback address) and two real hubs with
configurable-http-proxy, side by side for the whole run, each in its own namespace:

* ``dsplatform``: the embedded ``jupyterhub_config.py`` in Kubernetes mode
  (``DSPLATFORM_MODE=kubernetes``, ``ProfileKubeSpawner``) through ``tests.hub.HubProcess``,
  with a site config of a ``cpu-small`` profile (1 CPU, 1G, no datasets) and a ``gpu``
  profile (2 GPUs of type nvidia-a100, node selector and toleration), quotas, the shared
  dataset cache claim: each spawn goes through profile resolution, the quota check and
  ledger, the pod mapping (requests = limits, workspace emptyDir, cache claim, sandbox
  env, labels) and the fail-fast check at every poll of the pod.
* ``anchor``: plain ``kubespawner.KubeSpawner``, no dsplatform: ``bench/anchor_jupyterhub_config.py``
  (same proxy, authenticator, admin token, ``/lab``, ``--allow-root``) plus a few lines
  written by this script: the same image, ``cmd``, cpu and memory requests = limits and
  ``delete_grace_period``, and a KubeSpawner ``profile_list`` with the same two choices.

Spawn-to-ready: after one untimed warm-up each, spawns alternate (ABBA, ``--rounds 15``
each): from ``POST /hub/api/users/{u}/server`` until ``GET /hub/api/users/{u}`` (polled
every 50 ms) reports the server ``ready``; then it is stopped and the next spawn starts
once its pod is gone. Goal: median(dsplatform) / median(anchor) <= 1.05. 15 rounds rather
than bench_spawn's 7: JupyterHub's jittered readiness backoff spreads each side over
about 3 to 6 s, and the per-phase times from the logs (``pod_up`` has no jitter) say
where a difference comes from.

Time to failure: the ``gpu`` profile asks for 2 GPUs; the only GPU node has 1, so the pod
stays Pending (``FailedScheduling: Insufficient nvidia.com/gpu``). Timed from the POST until
it answers with the error, or else until the spawn's progress stream reports ``failed``.
dsplatform fails at once (``--fail-rounds 5``); plain KubeSpawner waits for
``start_timeout`` (``--start-timeout 30`` on both hubs; ``--anchor-fail-rounds 2``, 0 skips
them). No goal.

    .venv/bin/python -m bench.bench_kube_spawn [--rounds 15] [--fail-rounds 5] [--start-timeout 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.hub import HubProcess
from tests.kube_cluster import (
    GPU_PRODUCT,
    GPU_SCHEDULING_CONFIG,
    TOLERATION,
    cpu_and_gpu_nodes,
)
from tests.kube_emulator.process import EmulatorProcess

from .bench_spawn import ANCHOR_CONFIG, AnchorHub, spawn_once
from .common import (
    OtherLoad,
    cpu_contention,
    log,
    result_header,
    summarize,
    table,
    write_result,
)

NAME = "bench_kube_spawn"
GOAL_RATIO = 1.05
IMAGE = "quay.io/jupyter/scipy-notebook:2025-10-20"
GPUS_ASKED = 2
NODES = cpu_and_gpu_nodes(gpus=1)
NAMESPACES = {"dsplatform": "dsplatform", "anchor": "anchor"}
OPTIONS = {"cpu": {"profile": "cpu-small"}, "gpu": {"profile": "gpu"}}


def dsplatform_config(start_timeout: float, user: str) -> str:
    """The site config of the dsplatform hub (DSPLATFORM_EXTRA_CONFIG, after the embedded one)."""
    ns = NAMESPACES["dsplatform"]
    return (
        f"""
c.Spawner.start_timeout = {start_timeout!r}
c.KubeSpawner.namespace = {ns!r}
c.KubeSpawner.delete_grace_period = 1
c.ProfileSpawner.toolchains = {{"scipy": {{"image": {IMAGE!r}}}}}
c.ProfileSpawner.profiles = [
    {{"slug": "cpu-small", "toolchain": "scipy", "cpu": 1, "memory": "1G", "groups": ["*"]}},
    {{"slug": "gpu", "toolchain": "scipy", "gpu_type": "nvidia-a100", "gpu": {GPUS_ASKED},
     "cpu": 1, "memory": "1G", "groups": ["gpu-users"]}},
]
c.QuotaPolicy.default = {{"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0,
                         "gpu_hours_per_week": 0}}
c.QuotaPolicy.groups = {{"gpu-users": {{"servers": 1, "cpu": 2, "memory": "4G",
                                      "gpus": {GPUS_ASKED}, "gpu_hours_per_week": 10}}}}
c.QuotaPolicy.users = {{}}
c.QuotaPolicy.group_pools = {{}}
c.QuotaPolicy.pools = {{"nvidia-a100": 4}}
c.JupyterHub.load_groups = {{"gpu-users": {{"users": [{user!r}]}}}}
"""
        + GPU_SCHEDULING_CONFIG
    )


def anchor_config(start_timeout: float) -> str:
    """The anchor: bench/anchor_jupyterhub_config.py with plain KubeSpawner instead."""
    ns = NAMESPACES["anchor"]
    gpu = {
        "extra_resource_limits": {"nvidia.com/gpu": str(GPUS_ASKED)},
        "extra_resource_guarantees": {"nvidia.com/gpu": str(GPUS_ASKED)},
        "node_selector": {"nvidia.com/gpu.product": GPU_PRODUCT},
        "tolerations": [TOLERATION],
    }
    return f"""
load_subconfig({str(ANCHOR_CONFIG)!r})  # noqa: F821
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.Spawner.start_timeout = {start_timeout!r}
c.KubeSpawner.namespace = {ns!r}
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]  # as dsplatform-kube (and z2jh)
c.KubeSpawner.image = {IMAGE!r}
c.KubeSpawner.delete_grace_period = 1
c.KubeSpawner.cpu_limit = c.KubeSpawner.cpu_guarantee = 1.0
c.KubeSpawner.mem_limit = c.KubeSpawner.mem_guarantee = "1G"
c.KubeSpawner.profile_list = [
    {{"display_name": "CPU", "slug": "cpu-small", "default": True}},
    {{"display_name": "GPU", "slug": "gpu", "kubespawner_override": {gpu!r}}},
]
"""


class KubeAnchorHub(AnchorHub):
    """A plain JupyterHub with KubeSpawner (config written by this script)."""

    def write_config(self) -> Path:
        path = self.state / "anchor_kube_config.py"
        path.write_text(self.extra_config)
        return path


def wait_no_pods(emulator: EmulatorProcess, ns: str, timeout: float = 60) -> None:
    """Until the namespace has no pod left (the stopped server's pod is deleted)."""
    deadline = time.monotonic() + timeout
    while emulator.list("pods", ns):
        if time.monotonic() > deadline:
            raise TimeoutError(f"pods left in {ns} after {timeout}s: {emulator.list('pods', ns)}")
        time.sleep(0.1)


def fail_once(
    hub: HubProcess, emulator: EmulatorProcess, ns: str, user: str, timeout: float
) -> dict[str, Any]:
    """Spawn the GPU profile that cannot be placed; seconds until the user sees it fail."""
    token = hub.token_for(user)  # outside the timed region
    t0 = time.perf_counter()
    r = hub.spawn(user, "", OPTIONS["gpu"])
    if r.status_code not in (201, 202):  # failed inside the POST's answer window
        failed = time.perf_counter() - t0
        via, message = "POST", r.json().get("message", r.text)
    else:
        event: dict[str, Any] = {}
        with hub.session.get(
            f"{hub.api_url}/users/{user}/server/progress",
            headers={"Authorization": f"token {token}"},
            stream=True,
            timeout=timeout,
        ) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed") or event.get("ready"):
                        break
        failed = time.perf_counter() - t0
        if not event.get("failed"):
            raise RuntimeError(f"the unschedulable spawn did not fail: {event}\n{hub.log()}")
        via, message = "progress", event.get("message", "")
    # untimed: the hub has deleted the pod and forgotten the server
    deadline = time.monotonic() + 60
    while hub.server_model(user) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    wait_no_pods(emulator, ns)
    scheduler = [
        e["message"] for e in emulator.list("events", ns) if e["reason"] == "FailedScheduling"
    ]
    return {
        "fail_s": failed,
        "status": r.status_code,
        "via": via,
        "message": message[:300],
        "scheduler": scheduler[-1] if scheduler else None,  # the cluster's own reason
    }


_STAMP = re.compile(r"^\[[IWDE] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


def _stamp(line: str) -> dt.datetime | None:
    match = _STAMP.match(line)
    return dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f") if match else None


def serving_stamps(cluster_state: Path, ns: str) -> list[dt.datetime]:
    """When each pod's jupyterhub-singleuser said "Serving notebooks" (its container log)."""
    out = []
    for path in (cluster_state / "pods" / ns).glob("*/logs/notebook.log"):
        for line in path.read_text(errors="replace").splitlines():
            when = _stamp(line)
            if when and "Serving notebooks from local directory" in line:
                out.append(when)
    return sorted(out)


def log_phases(log_text: str, serving: list[dt.datetime], skip: int) -> dict[str, list[float]]:
    """Per successful spawn, in seconds, from the hub log and the pods' container logs:

    * ``pre_create``: "Creating oauth client" (start of ``User.spawn``) to KubeSpawner's
      "Attempting to create pod": the hub's and the spawner's work before the API call
      (dsplatform: profile, quota, ledger, pod mapping);
    * ``pod_up``: "Attempting to create pod" to the pod's "Serving notebooks": the API
      server, scheduler and kubelet (emulated) and the single-user server's start;
    * ``detect``: "Serving notebooks" to the hub's "took N seconds to start": KubeSpawner
      seeing the pod Running (watch) and JupyterHub's readiness check (exponential backoff
      with full jitter).

    Spawns that failed (no "seconds to start") and the first ``skip`` spawns are left out.
    """
    out: dict[str, list[float]] = {"pre_create": [], "pod_up": [], "detect": []}
    marks: dict[str, dt.datetime] = {}
    count = 0
    for line in log_text.splitlines():
        when = _stamp(line)
        if when is None:
            continue
        if "Creating oauth client" in line:
            marks = {"begin": when}
        elif "Attempting to create pod" in line and "begin" in marks:
            marks["create"] = when
        elif "seconds to start" in line and len(marks) == 2:
            count += 1
            up = [s for s in serving if marks["create"] <= s <= when]
            if count > skip and up:
                out["pre_create"].append((marks["create"] - marks["begin"]).total_seconds())
                out["pod_up"].append((up[0] - marks["create"]).total_seconds())
                out["detect"].append((when - up[0]).total_seconds())
            marks = {}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed spawns per hub (>= 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed spawns per hub first")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between polls")
    parser.add_argument("--settle", type=float, default=0.5, help="pause after each stop")
    parser.add_argument("--timeout", type=float, default=120, help="per-spawn limit (s)")
    parser.add_argument(
        "--start-timeout", type=float, default=30, help="c.Spawner.start_timeout, both hubs"
    )
    parser.add_argument("--fail-rounds", type=int, default=5, help="unschedulable spawns")
    parser.add_argument(
        "--anchor-fail-rounds",
        type=int,
        default=2,
        help="unschedulable spawns on the anchor (each lasts start_timeout; 0 skips)",
    )
    parser.add_argument("--user", default="bench", help="user name on both hubs")
    parser.add_argument("--keep", action="store_true", help="keep the temp state dirs")
    args = parser.parse_args(argv)

    contention = cpu_contention()
    others = OtherLoad()
    base = Path(tempfile.mkdtemp(prefix="bench-kube-spawn-"))
    emulator = EmulatorProcess(base / "cluster", nodes=NODES, namespaces=list(NAMESPACES.values()))
    hubs: dict[str, HubProcess] = {}
    startup: dict[str, float] = {}
    samples: dict[str, list[dict[str, Any]]] = {"dsplatform": [], "anchor": []}
    failures: dict[str, list[dict[str, Any]]] = {"dsplatform": [], "anchor": []}
    phases: dict[str, dict[str, list[float]]] = {}
    try:
        emulator.start()
        # what the platform's chart provides: the shared dataset cache claim
        emulator.create("persistentvolumeclaims", NAMESPACES["dsplatform"], {
            "metadata": {"name": "dsdata-cache"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}},
        })  # fmt: skip
        env = {"KUBECONFIG": str(emulator.kubeconfig)}
        makers = {
            "dsplatform": lambda: HubProcess(
                base / "dsplatform",
                dsplatform_config(args.start_timeout, args.user),
                env={**env, "DSPLATFORM_MODE": "kubernetes"},
            ),
            "anchor": lambda: KubeAnchorHub(
                base / "anchor", anchor_config(args.start_timeout), env=env
            ),
        }
        for name, make in makers.items():
            t0 = time.perf_counter()
            hubs[name] = make().start(timeout=90)
            startup[name] = time.perf_counter() - t0
            log(f"{NAME}: {name} hub up in {startup[name]:.1f}s at {hubs[name].url}")

        def spawn(name: str) -> dict[str, Any]:
            sample = spawn_once(hubs[name], args.user, OPTIONS["cpu"], args.poll, args.timeout)
            wait_no_pods(emulator, NAMESPACES[name])  # untimed
            time.sleep(args.settle)
            return sample

        for name in hubs:
            for _ in range(args.warmup):
                spawn(name)
        for i in range(args.rounds):
            order = ["dsplatform", "anchor"] if i % 2 == 0 else ["anchor", "dsplatform"]
            for name in order:
                sample = spawn(name)
                sample["round"] = i
                samples[name].append(sample)
                log(f"  round {i} {name:>10}: ready in {sample['ready_s']:.3f}s")
        rounds = {"dsplatform": args.fail_rounds, "anchor": args.anchor_fail_rounds}
        for i in range(max(rounds.values())):
            for name in ("dsplatform", "anchor"):
                if i >= rounds[name]:
                    continue
                sample = fail_once(
                    hubs[name],
                    emulator,
                    NAMESPACES[name],
                    args.user,
                    args.start_timeout + args.timeout,
                )
                sample["round"] = i
                failures[name].append(sample)
                log(
                    f"  unschedulable {i} {name:>10}: failed after {sample['fail_s']:.3f}s "
                    f"({sample['via']} {sample['status']}: {sample['message'][:90]})"
                )
                time.sleep(args.settle)
    finally:
        for hub in hubs.values():
            try:
                hub.stop_all_servers()
            except Exception as e:  # report, keep stopping the rest
                log(f"{NAME}: stopping servers failed: {e}")
            hub.stop()
        emulator.stop()
        for name, hub in hubs.items():
            text = hub.log_path.read_text(errors="replace") if hub.log_path.exists() else ""
            serving = serving_stamps(emulator.state / "cluster", NAMESPACES[name])
            phases[name] = log_phases(text, serving, args.warmup)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    stats = {
        name: {
            "ready_s": summarize([s["ready_s"] for s in samples[name]]),
            "post_s": summarize([s["post_s"] for s in samples[name]]),
            "stop_s": summarize([s["stop_s"] for s in samples[name]]),
            "post_status": sorted({s["post_status"] for s in samples[name]}),
            "pre_create_s": summarize(phases.get(name, {}).get("pre_create", [])),
            "pod_up_s": summarize(phases.get(name, {}).get("pod_up", [])),
            "detect_s": summarize(phases.get(name, {}).get("detect", [])),
            "fail_s": summarize([s["fail_s"] for s in failures[name]]),
            "fail_how": sorted(
                {
                    f"POST {s['status']}" if s["via"] == "POST" else "progress"
                    for s in failures[name]
                }
            ),
        }
        for name in samples
    }
    d, a = stats["dsplatform"], stats["anchor"]
    ratio = d["ready_s"]["p50"] / a["ready_s"]["p50"]
    ratio_p90 = d["ready_s"]["p90"] / a["ready_s"]["p90"]
    up_ratio = d["pod_up_s"]["p50"] / a["pod_up_s"]["p50"]
    fail_ratio = d["fail_s"]["p50"] / a["fail_s"]["p50"] if a["fail_s"]["n"] else None
    fail_vs_timeout = d["fail_s"]["p50"] / args.start_timeout
    print("\nSpawn-to-ready in Kubernetes mode (seconds; POST -> server model ready)")
    print(
        table(
            ["hub", "n", "median", "p90", "min", "max", "pre-create", "pod-up", "detect", "stop"],
            [
                [
                    name,
                    stats[name]["ready_s"]["n"],
                    stats[name]["ready_s"]["p50"],
                    stats[name]["ready_s"]["p90"],
                    stats[name]["ready_s"]["min"],
                    stats[name]["ready_s"]["max"],
                    stats[name]["pre_create_s"]["p50"],
                    stats[name]["pod_up_s"]["p50"],
                    stats[name]["detect_s"]["p50"],
                    stats[name]["stop_s"]["p50"],
                ]
                for name in ("dsplatform", "anchor")
            ],
        )
    )
    print(
        f"\nratio dsplatform/anchor: median {ratio:.3f}, p90 {ratio_p90:.3f} "
        f"(goal median ratio <= {GOAL_RATIO}); pod-up median ratio {up_ratio:.3f}"
    )
    print(
        "pre-create, pod-up, detect: medians from the hub log and the pods' container logs "
        "(User.spawn -> pod create call -> 'Serving notebooks' -> hub sees it ready); stop: "
        "the DELETE"
    )
    print(
        f"\nTime to failure of an unschedulable pod ({GPUS_ASKED} GPUs asked, 1 on the node; "
        f"start_timeout {args.start_timeout:g} s on both hubs)"
    )
    print(
        table(
            ["hub", "n", "median", "p90", "min", "max", "how"],
            [
                [
                    name,
                    stats[name]["fail_s"]["n"],
                    stats[name]["fail_s"]["p50"],
                    stats[name]["fail_s"]["p90"],
                    stats[name]["fail_s"]["min"],
                    stats[name]["fail_s"]["max"],
                    ", ".join(stats[name]["fail_how"]) or "-",
                ]
                for name in ("dsplatform", "anchor")
            ],
        )
    )
    if fail_ratio is not None:
        print(f"\nratio dsplatform/anchor time to failure: median {fail_ratio:.3f}")
    print(f"dsplatform time to failure / start_timeout: {fail_vs_timeout:.3f}")
    if failures["dsplatform"]:
        print(f"dsplatform's message: {failures['dsplatform'][0]['message']}")
    result = {
        **result_header(NAME, vars(args), contention, others),
        "goal": {"median_ratio": GOAL_RATIO},
        "hub_startup_s": startup,
        "stats": stats,
        "samples": samples,
        "failures": failures,
        "phases": phases,
        "ratio_median": ratio,
        "ratio_p90": ratio_p90,
        "pod_up_ratio_median": up_ratio,
        "fail_ratio_median": fail_ratio,
        "fail_vs_start_timeout": fail_vs_timeout,
        "meets_goal": ratio <= GOAL_RATIO,
    }
    path = write_result(NAME, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
