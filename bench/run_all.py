"""Run every benchmark with its defaults, one after the other, and write bench/results/summary.md.

    .venv/bin/python -m bench.run_all [--only bench_quota ...] [--summary-only]

Each benchmark runs in its own Python process (``python -m bench.<name>``) and writes
bench/results/<name>.json; the summary is a markdown table for the README built from those
files (a benchmark that failed keeps its previous JSON out of the table).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import REPO, RESULTS, log, machine_info

BENCHMARKS = (
    "bench_spawn",
    "bench_kube_spawn",
    "bench_quota",
    "bench_storm",
    "bench_pull",
    "bench_commit",
    "bench_predict",
)


def _ok(flag: bool) -> str:
    return "meets goal" if flag else "**misses goal**"


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f} ms"


def spawn_row(r: dict[str, Any]) -> list[str]:
    d, a = r["stats"]["dsplatform"], r["stats"]["anchor"]
    return [
        "Spawn-to-ready through the hub (`bench_spawn`), profile cpu-small",
        "JupyterHub `SimpleLocalProcessSpawner`, same hub, proxy, interpreter and `/lab`",
        f"dsplatform median {d['ready_s']['p50']:.2f} s, p90 {d['ready_s']['p90']:.2f} s; "
        f"anchor median {a['ready_s']['p50']:.2f} s, p90 {a['ready_s']['p90']:.2f} s "
        f"(n = {d['ready_s']['n']} + {a['ready_s']['n']}, alternating); single-user process "
        f"up: {d['process_up_s']['p50']:.2f} s vs {a['process_up_s']['p50']:.2f} s; hub work "
        f"before the fork: {d['pre_spawn_s']['p50'] * 1000:.0f} ms vs "
        f"{a['pre_spawn_s']['p50'] * 1000:.0f} ms; JupyterHub readiness backoff: "
        f"{d['detect_s']['p50']:.2f} s vs {a['detect_s']['p50']:.2f} s",
        f"{r['ratio_median']:.2f} (p90 {r['ratio_p90']:.2f}; process-up "
        f"{r['process_up_ratio_median']:.2f}) / goal <= {r['goal']['median_ratio']}: "
        f"{_ok(r['meets_goal'])}",
    ]


def kube_spawn_row(r: dict[str, Any]) -> list[list[str]]:
    """Two rows: spawn-to-ready, and time to failure of an unschedulable pod."""
    d, a, p = r["stats"]["dsplatform"], r["stats"]["anchor"], r["params"]
    rows = [
        [
            "Spawn-to-ready in Kubernetes mode (`bench_kube_spawn`): `dsplatform-kube`, "
            "profile cpu-small, against the Kubernetes-API emulator",
            "plain `kubespawner.KubeSpawner` (`profile_list`), same emulator, hub, proxy, "
            "image, cmd, cpu/memory",
            f"dsplatform median {d['ready_s']['p50']:.2f} s, p90 {d['ready_s']['p90']:.2f} s; "
            f"anchor median {a['ready_s']['p50']:.2f} s, p90 {a['ready_s']['p90']:.2f} s "
            f"(n = {d['ready_s']['n']} + {a['ready_s']['n']}, alternating); hub work before "
            f"the pod is created: {d['pre_create_s']['p50'] * 1000:.0f} ms vs "
            f"{a['pre_create_s']['p50'] * 1000:.0f} ms; pod create to single-user serving: "
            f"{d['pod_up_s']['p50']:.2f} s vs {a['pod_up_s']['p50']:.2f} s; then until the "
            f"hub sees it ready: {d['detect_s']['p50']:.2f} s vs {a['detect_s']['p50']:.2f} s",
            f"{r['ratio_median']:.2f} (p90 {r['ratio_p90']:.2f}; pod-up "
            f"{r['pod_up_ratio_median']:.2f}) / goal <= {r['goal']['median_ratio']}: "
            f"{_ok(r['meets_goal'])}",
        ]
    ]
    if d["fail_s"]["n"]:
        anchor = (
            f"anchor median {a['fail_s']['p50']:.2f} s, p90 {a['fail_s']['p90']:.2f} s "
            f"(n = {a['fail_s']['n']}; KubeSpawner's own deadline has +-10 % jitter)"
            if a["fail_s"]["n"]
            else "anchor not run"
        )
        ratio = (
            f"{r['fail_ratio_median']:.3f} of the anchor's time"
            if r.get("fail_ratio_median") is not None
            else f"{r['fail_vs_start_timeout']:.3f} of start_timeout"
        )
        rows.append(
            [
                "Time to failure of an unschedulable GPU pod (`bench_kube_spawn`): 2 GPUs "
                "asked, 1 on the GPU node",
                f"plain KubeSpawner, which waits for `start_timeout` ({p['start_timeout']:g} s "
                "on both hubs)",
                f"dsplatform median {d['fail_s']['p50']:.2f} s, p90 {d['fail_s']['p90']:.2f} s "
                f"(n = {d['fail_s']['n']}; {', '.join(d['fail_how'])}, FailedScheduling in "
                f"the message); {anchor}",
                f"{ratio} / no goal",
            ]
        )
    return rows


def quota_row(r: dict[str, Any]) -> list[str]:
    sizes = r["sizes"]
    per = "; ".join(
        f"{s['users']:,} users: p50 {_ms(s['decision_ms']['p50'])}, p99 "
        f"{_ms(s['decision_ms']['p99'])}, max {_ms(s['decision_ms']['max'])}"
        for s in sizes
    )
    gpu = ", ".join(f"{_ms(s['gpu_path_ms']['p99'])}" for s in sizes)
    return [
        "Quota decision (`bench_quota`): resolve_request + hours_this_week + Ledger.reserve, "
        f"{sizes[0]['decisions']:,} decisions per size",
        f"the same path at {sizes[0]['users']:,} users (growth); 2,000 running servers' grants "
        "(N//5 below 2,000 users), GPU sessions in the hub's SQLite",
        f"{per}; GPU-request path p99 {gpu}",
        f"p99 growth x{r['growth']['p99']:.2f} ({r['growth']['from']:,} -> "
        f"{r['growth']['to']:,}); worst p99 {_ms(r['worst_p99_ms'])}, GPU path "
        f"{_ms(r['worst_gpu_path_p99_ms'])} / goal p99 <= {r['goal']['p99_ms']:g} ms: "
        f"{_ok(r['meets_goal'])}",
    ]


def storm_row(r: dict[str, Any]) -> list[str]:
    lat = r["latency"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["status_histogram"].items()))
    late = r.get("accepted_then_refused", 0)
    return [
        f"Spawn storm (`bench_storm`): {r['params']['users']} users fire at once for "
        f"{r['expected']} GPUs",
        f"the pool: {r['expected']} servers may start; idle hub API latency",
        f"started {r['started']}, max GPUs in use (usage API) {r['max_gpus_used_seen']}, "
        f"after stop {r['pool_after_stop']['used'] if r['pool_after_stop'] else '-'}; POST "
        f"statuses {statuses} ({late} of the 202s refused later in start); "
        f"GET /hub/api/ p50/p99 {_ms(lat['api_storm_ms']['p50'])} / "
        f"{_ms(lat['api_storm_ms']['p99'])} (idle {_ms(lat['api_idle_ms']['p50'])} / "
        f"{_ms(lat['api_idle_ms']['p99'])}), usage API {_ms(lat['usage_storm_ms']['p50'])} / "
        f"{_ms(lat['usage_storm_ms']['p99'])} (idle {_ms(lat['usage_idle_ms']['p50'])} / "
        f"{_ms(lat['usage_idle_ms']['p99'])})",
        f"overshoot {r['overshoot']} / goal 0: {_ok(r['meets_goal'])}",
    ]


def _s(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f} s"


def _kinds(pulls: list[dict[str, int] | None]) -> str:
    kinds = sorted({", ".join(f"{k}" for k in sorted(p)) for p in pulls if p})
    return " / ".join(kinds) or "-"


def pull_row(r: dict[str, Any]) -> list[list[str]]:
    """Three rows: cold pull vs anchors, warm re-pull, disk use of 10 users (isolated mode)."""
    g, cold, ok, u = r["goal"], r["cold"], r["meets_goal"], r["users"]
    size = f"{cold['many']['bytes'] / 2**20:.0f} MiB"
    result = "; ".join(
        f"{n} ({c['files']} file{'s' if c['files'] > 1 else ''}): pull "
        f"{_s(c['median_s']['pull'])}, dvc get {_s(c['median_s']['dvc_get'])}, cp -r "
        f"{_s(c['median_s']['cp'])} (materialised: {_kinds(c['pull_links'])})"
        for n, c in cold.items()
    )
    ratio = "; ".join(
        f"{n}: pull/dvc get {c['ratio_pull_vs_dvc_get']:.2f} / goal <= {g['pull_vs_dvc_get']}: "
        f"{_ok(ok[f'{n}_pull_vs_dvc_get'])}, pull/cp {c['ratio_pull_vs_cp']:.2f} / goal <= "
        f"{g['pull_vs_cp']}: {_ok(ok[f'{n}_pull_vs_cp'])}"
        for n, c in cold.items()
    )
    warm = "; ".join(
        f"{n}: {_s(c['warm_median_s'])} ({_kinds(c['warm_links'])}) vs cold "
        f"{_s(c['median_s']['pull'])} = {c['ratio_warm_vs_cold']:.3f}: "
        f"{_ok(ok[f'{n}_warm_vs_cold'])}"
        for n, c in cold.items()
    )
    return [
        [
            f"Cold pull (`bench_pull`): a sandbox account's `DataService.pull` of {size} into an "
            "empty shared cache and a new workspace, local mode with isolation on (hub as root, "
            "the catalog fetches and verifies), median of "
            f"{r['params']['rounds']} rotating rounds",
            "`dvc get REGISTRY data/NAME --rev NAME@v1.0.0` (DVC CLI, as root) and `cp -r` of "
            "the data, same registry and remote",
            result,
            ratio,
        ],
        [
            "Warm re-pull (`bench_pull`): the same version into a new workspace, cache complete",
            "the cold pull",
            warm,
            f"goal <= {g['warm_vs_cold']}x",
        ],
        [
            f"Disk use of {u['users']} users pulling one version (`bench_pull`), each as their "
            "own account: shared cache + workspaces, each inode once",
            "one copy of the data",
            f"{u['disk']['bytes'] / 2**20:.0f} MiB = {u['disk_ratio']:.3f}x "
            f"({u['disk_ratio_files']:.3f}x counting regular files only; {_kinds(u['links'])})",
            f"goal {g['disk_ratio']}x: {_ok(ok['disk_ratio'])}",
        ],
    ]


def commit_row(r: dict[str, Any]) -> list[list[str]]:
    med = statistics.median
    hand, ours, outs = (
        med(r["by_hand_s"]),
        med(r["dsdata_commit_s"]),
        med(r["dsdata_commit_outputs_s"]),
    )
    return [
        [
            f"`%dsdata commit` of a small project (`bench_commit`), n = {r['rounds']} alternating",
            "the same by hand: `git add -A && git commit` + one `mlflow.start_run` with the "
            "same params and metrics",
            f"dsdata {ours * 1000:.0f} ms, by hand {hand * 1000:.0f} ms (medians); with "
            f"`--outputs` (1 MB, dvc add + push) {outs * 1000:.0f} ms",
            f"{r['ratio']:.2f} / goal <= {r['goal']}: {_ok(r['ratio'] <= r['goal'])}",
        ],
        [
            "`%dsdata publish` latency (`bench_commit`)",
            "-",
            f"from a pickled scikit-learn model (log + register + alias) median "
            f"{med(r['publish_path_s']):.2f} s; from a run's model "
            f"{med(r['publish_run_s']):.2f} s",
            "no goal",
        ],
    ]


def predict_row(r: dict[str, Any]) -> list[str]:
    g, a, p = r["stats"]["gateway"], r["stats"]["anchor"], r["params"]
    return [
        "Prediction through the catalog gateway (`bench_predict`): hub proxy + catalog "
        f"service, scoped token, sklearn model, {p['rows']}-row `dataframe_split`",
        "`mlflow models serve -m models:/NAME@production --env-manager local`, same "
        "client and payload, alternating rounds",
        f"gateway p50 {_ms(g['latency_ms']['p50'])}, p99 {_ms(g['latency_ms']['p99'])}, "
        f"{g['rps']:.0f} req/s; anchor p50 {_ms(a['latency_ms']['p50'])}, p99 "
        f"{_ms(a['latency_ms']['p99'])}, {a['rps']:.0f} req/s ({p['threads']} client threads, "
        f"{p['rounds']} x {p['seconds']:g} s each)",
        f"throughput {r['ratio_rps']:.2f} / goal >= {r['goal']['rps_ratio']}: "
        f"{_ok(r['meets_goal'])}",
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "bench_spawn": spawn_row,
    "bench_kube_spawn": kube_spawn_row,
    "bench_quota": quota_row,
    "bench_storm": storm_row,
    "bench_pull": pull_row,
    "bench_commit": commit_row,
    "bench_predict": predict_row,
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary(results: dict[str, dict[str, Any]], failed: dict[str, int]) -> str:
    info = machine_info()
    header = ["benchmark", "anchor", "result", "ratio / goal", "machine"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    notes = []
    for name in BENCHMARKS:
        if name in failed:
            lines.append(f"| `{name}` | - | failed (exit {failed[name]}) | - | - |")
            continue
        r = results.get(name)
        if r is None:
            continue
        m = r["machine"]
        busy = r.get("contention_before", {}).get("busy_fraction")
        machine = f"nproc {m['nproc']}, Python {m['python']}"
        if busy is not None and busy >= 0.15:
            top = ", ".join(p["name"] for p in r["contention_before"].get("top", [])[:2])
            machine += f"; {busy:.0%} busy before ({top})"
        during = r.get("contention_during") or {}
        if (during.get("others_cpu") or 0) >= 0.15:
            top = ", ".join(p["name"] for p in during.get("top", [])[:2])
            machine += f"; other processes used {during['others_cpu']:.2f} CPUs during ({top})"
        built = ROWS[name](r)
        for row in built if isinstance(built[0], list) else [built]:  # one row or several
            lines.append("| " + " | ".join(_cell(c) for c in [*row, machine]) + " |")
        src = m.get("source", {})
        if src.get("modified"):
            notes.append(
                f"- `{name}` ran with uncommitted changes to {', '.join(src['modified'])} "
                f"(diff {src.get('diff_sha1')}) on {src.get('commit')}."
            )
    # describe the machine and commit the results came from (not the summary's own run)
    ran = [r["machine"] for r in results.values()] or [info]
    first = ran[0]
    commits = sorted({m.get("source", {}).get("commit") or "?" for m in ran})
    when = sorted(m["when"] for m in ran)
    text = "\n".join(lines) + "\n\n"
    text += (
        f"Machine: {first['nproc']} CPUs, Python {first['python']}, JupyterHub "
        f"{first['jupyterhub']}, {first['platform']}; commit {', '.join(commits)}; "
        f"run {when[0]} to {when[-1]}.\n"
    )
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument(
        "--summary-only", action="store_true", help="rebuild summary.md from existing JSON"
    )
    args = parser.parse_args(argv)

    failed: dict[str, int] = {}
    ran = []
    if not args.summary_only:
        for name in args.only or BENCHMARKS:
            log(f"\n=== {name} ===")
            t0 = time.perf_counter()
            rc = subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=REPO)
            log(f"=== {name}: exit {rc} in {time.perf_counter() - t0:.0f}s ===")
            ran.append(name)
            if rc != 0:
                failed[name] = rc
    results = {}
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if path.exists() and name not in failed:
            results[name] = json.loads(path.read_text())
    text = summary(results, failed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(RESULTS / "summary.md")
    out.write_text(text)
    print("\n" + text)
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
