"""Dataset pull in the default local mode with isolation on, against `dvc get` and `cp -r`.

One DVC data registry (private to root, like the platform's) holds two datasets of
``--size-mb`` (default 1024 MiB) of random bytes each, both released as ``v1.0.0``: ``many``
as ``--files`` (default 1,000) files in 10 sub-directories, ``one`` as a single file. A real
hub runs as root with its catalog service, and each of ``--users`` sandbox accounts has a
pull worker (``bench/pull_platform.py``): the sandbox's own ``DataService`` asks the catalog
to fetch (it checks the user, downloads from the DVC remote into the shared cache with every
checksum verified, seals the objects read-only), then links the objects into the workspace.

1. **Cold pull**, per dataset, ``--rounds`` (default 3) rounds, the order of the three
   methods rotating each round (``sync`` untimed before each):
   - ``pull``: an empty shared cache and a new workspace of user ``bench0``;
   - ``dvc get REGISTRY data/NAME -o OUT --rev NAME@v1.0.0`` as root (the CLI's start-up
     included: what a user would otherwise run);
   - ``cp -r`` of the registry's working copy.
   Medians and the ratios pull/dvc-get (goal <= 1.0) and pull/cp (goal <= 1.3).
2. **Warm re-pull**: the same version into a new workspace, the cache complete, vs the cold
   pull (goal <= 0.05x), timed after ``--settle`` (5) seconds: a re-pull within a second of a
   1 GiB download waits on the file system still settling it (recorded too).
3. **10 users, one version**: each user pulls ``many`` into their own workspace through the
   same cache. Bytes on disk of the cache + all workspaces (``st_blocks``, each inode once,
   symlinks a block) over one plain copy (goal 1.0x).

    sudo .venv/bin/python -m bench.bench_pull [--size-mb 1024] [--files 1000] [--rounds 3]
        [--users 10] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    OtherLoad,
    contention_note,
    cpu_contention,
    log,
    machine_info,
    table,
    write_result,
)
from .pull_data import (
    MIB,
    VERSION,
    build_registry,
    check_tree,
    copy_tree,
    disk_usage,
    dvc_get,
    rm,
    timed,
)
from .pull_platform import Worker, empty_cache, platform

NAME = "bench_pull"
GOALS = {"pull_vs_dvc_get": 1.0, "pull_vs_cp": 1.3, "warm_vs_cold": 0.05, "disk_ratio": 1.0}


def cold_and_warm(
    name: str, registry: Path, hub: Any, worker: Worker, work: Path, expect: dict[str, int],
    rounds: int, settle: float,
) -> dict[str, Any]:  # fmt: skip
    ref = f"{name}@{VERSION}"
    methods = ["pull", "dvc_get", "cp"]
    times: dict[str, list[float]] = {m: [] for m in methods}
    links: list[dict[str, int]] = []
    for r in range(rounds):
        for method in methods[r % 3 :] + methods[: r % 3]:
            if method == "pull":
                empty_cache(hub)
                ws = worker.workspace(f"{name}-cold-{r}")
                out = worker.pull(ref, ws)
                assert not out["from_cache"] and out["downloaded"] >= expect["files"], out
                seconds = out["seconds"]
                links.append(out["links"])
                check_tree(ws / "data" / name, expect, f"pull {name}")
                rm(ws)
            else:
                target = work / f"{name}-{method}-{r}"
                anchor = dvc_get if method == "dvc_get" else copy_tree
                seconds, _ = timed(anchor, registry, name, target, *(
                    [work / "dvc-site"] if method == "dvc_get" else []))  # fmt: skip
                check_tree(target, expect, f"{method} {name}")
                rm(target)
            times[method].append(seconds)
            log(f"  {name} round {r + 1}: {method:8s} {seconds:6.2f} s")
    # right after the last cold pull's 1 GiB was written: what a re-pull sees then
    ws = worker.workspace(f"{name}-warm-now")
    immediate = worker.pull(ref, ws)
    rm(ws)
    time.sleep(settle)  # then the file system settles (writeback, journal) before the timed rounds
    warm, warm_links = [], []
    for r in range(rounds):  # the cache is complete after the last cold pull
        ws = worker.workspace(f"{name}-warm-{r}")
        out = worker.pull(ref, ws)
        assert out["from_cache"] and out["downloaded"] == 0, out
        warm.append(out["seconds"])
        warm_links.append(out["links"])
        rm(ws)
        log(f"  {name} warm re-pull {r + 1}: {out['seconds']:6.2f} s ({out['links']})")
    med = {m: statistics.median(v) for m, v in times.items()}
    return {
        "dataset": name,
        "files": expect["files"],
        "bytes": expect["bytes"],
        "seconds": times,
        "median_s": med,
        "pull_links": links,
        "ratio_pull_vs_dvc_get": med["pull"] / med["dvc_get"],
        "ratio_pull_vs_cp": med["pull"] / med["cp"],
        "warm_s": warm,
        "warm_median_s": statistics.median(warm),
        "warm_right_after_cold_s": immediate["seconds"],
        "warm_links": warm_links,
        "ratio_warm_vs_cold": statistics.median(warm) / med["pull"],
        "throughput_mib_s": {m: expect["bytes"] / MIB / s for m, s in med.items()},
    }


def many_users(
    name: str, hub: Any, workers: list[Worker], one_copy: int, settle: float
) -> dict[str, Any]:
    """Every user pulls ``name`` into a workspace of their own, through one shared cache."""
    empty_cache(hub)
    ref = f"{name}@{VERSION}"
    seconds, links, workspaces = [], [], []
    for i, worker in enumerate(workers):
        if i == 1:
            time.sleep(settle)  # the first user's download settles, as for the warm re-pulls
        ws = worker.workspace(f"{name}-shared")
        out = worker.pull(ref, ws)
        seconds.append(out["seconds"])
        links.append(out["links"])
        workspaces.append(ws)
        log(f"  {worker.account.name}: {out['links']} in {out['seconds']:.2f} s")
    usage = disk_usage(hub.state / "platform" / "cache" / "files", *workspaces)
    rm(*workspaces)
    return {
        "users": len(workers),
        "seconds": seconds,
        "first_pull_s": seconds[0],
        "later_pulls_median_s": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
        "links": links,
        "disk": usage,
        "disk_ratio": usage["bytes"] / one_copy,
        "disk_ratio_files": usage["file_bytes"] / one_copy,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="MiB per dataset")
    parser.add_argument("--files", type=int, default=1000, help="files of the 'many' dataset")
    parser.add_argument("--rounds", type=int, default=3, help="cold (and warm) rounds each")
    parser.add_argument("--users", type=int, default=10, help="users sharing one cache")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after a download before warm re-pulls are timed")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    contention = cpu_contention()
    log(f"{NAME}: {args.size_mb} MiB per dataset; CPU busy before: {contention['busy_fraction']}")
    base = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.workdir))
    work = base / "work"
    (work / "dvc-site").mkdir(parents=True)
    result: dict[str, Any] = {"name": NAME}
    try:
        log("building the registry ...")
        t0 = time.perf_counter()
        registry, datasets = build_registry(base, args.size_mb * MIB, args.files)
        log(f"  built in {time.perf_counter() - t0:.0f} s: {datasets}")
        one_copy = {n: disk_usage(registry / "data" / n)["file_bytes"] for n in datasets}
        log("starting the hub (root, catalog service) and the users' pull workers ...")
        t0 = time.perf_counter()
        with platform(base, registry, args.users) as (hub, workers):
            ready_s = time.perf_counter() - t0
            load = OtherLoad()
            cold = {}
            for name in datasets:
                log(f"cold pulls of {name!r} ({datasets[name]['files']} files):")
                cold[name] = cold_and_warm(name, registry, hub, workers[0], work,
                                           datasets[name], args.rounds, args.settle)  # fmt: skip
            log(f"{args.users} users, one version of 'many':")
            users = many_users("many", hub, workers, one_copy["many"], args.settle)
            during = load.stop()
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
            "mode": "local mode, hub as root, sandboxes as their own accounts, catalog fetches",
            "platform_ready_s": round(ready_s, 1),
            "datasets": datasets,
            "one_copy_bytes": one_copy,
            "cold": cold,
            "users": users,
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


def _dvc_version() -> str:
    from importlib.metadata import version

    return version("dvc")


def _goals(r: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for name, c in r["cold"].items():
        out[f"{name}_pull_vs_dvc_get"] = c["ratio_pull_vs_dvc_get"] <= GOALS["pull_vs_dvc_get"]
        out[f"{name}_pull_vs_cp"] = c["ratio_pull_vs_cp"] <= GOALS["pull_vs_cp"]
        out[f"{name}_warm_vs_cold"] = c["ratio_warm_vs_cold"] <= GOALS["warm_vs_cold"]
    out["disk_ratio"] = r["users"]["disk_ratio"] <= GOALS["disk_ratio"] + 0.05
    return out


def kinds(pulls: list[dict[str, int]]) -> str:
    """The link kinds of each pull, e.g. ``symlink 1000 (x3)``."""
    labels = [", ".join(f"{k} {v}" for k, v in sorted(p.items())) or "-" for p in pulls]
    return "; ".join(f"{k} (x{labels.count(k)})" for k in sorted(set(labels)))


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def render(r: dict[str, Any]) -> str:
    g = r["goal"]
    rows = []
    for name, c in r["cold"].items():
        rows.append([
            f"cold {name} ({c['files']} files, {c['bytes'] / MIB:.0f} MiB)",
            *(spread(c["seconds"][k]) for k in ("pull", "dvc_get", "cp")),
            f"{c['ratio_pull_vs_dvc_get']:.2f} (<= {g['pull_vs_dvc_get']})",
            f"{c['ratio_pull_vs_cp']:.2f} (<= {g['pull_vs_cp']})",
            kinds(c["pull_links"]),
        ])  # fmt: skip
    text = table(["cold pull", "pull s", "dvc get s", "cp -r s", "pull/dvc get", "pull/cp",
                  "materialised"], rows)  # fmt: skip
    text += (
        "\nmedian (min-max); pull = the sandbox account's DataService.pull through the "
        "catalog's fetch (verified), then links"
    )
    rows = [
        [f"re-pull {name}", c["warm_median_s"], c["median_s"]["pull"],
         f"{c['ratio_warm_vs_cold']:.3f} (<= {g['warm_vs_cold']})", kinds(c["warm_links"])]
        for name, c in r["cold"].items()
    ]  # fmt: skip
    text += "\n\n" + table(["warm re-pull", "median s", "cold pull s", "warm/cold", "links"], rows)
    text += "\nafter the download settled ({}s); right after it: {}".format(
        r["params"]["settle"],
        ", ".join(f"{n} {c['warm_right_after_cold_s']:.2f} s" for n, c in r["cold"].items()),
    )
    u = r["users"]
    text += "\n\n" + table(
        ["shared cache", "cache + workspaces", "/ one copy", "regular files only", "links"],
        [[f"{u['users']} users, own accounts", f"{u['disk']['bytes'] / MIB:.0f} MiB",
          f"{u['disk_ratio']:.3f}x (goal {g['disk_ratio']}x)", f"{u['disk_ratio_files']:.3f}x",
          kinds(u["links"])]],
    )  # fmt: skip
    text += (
        f"\nfirst user's pull (downloads) {u['first_pull_s']:.2f} s, the others' median "
        f"{u['later_pulls_median_s']:.2f} s"
    )
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
