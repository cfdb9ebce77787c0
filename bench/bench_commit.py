"""``%dsdata commit`` vs the same steps by hand, and ``%dsdata publish`` latency.

One MLflow server (SQLite store, proxied artifacts, like local mode) and one small project
(a few source files, a params file, a pulled-dataset lineage) serve both sides. Each round
edits a source file and then records it:

* dsplatform: ``ExperimentService.commit(message, params=…, metrics=…)`` (git commit,
  environment spec, one MLflow run with params, metrics, lineage tags, dataset inputs and
  the environment artifact);
* anchor, by hand: ``git add -A && git commit`` plus one ``mlflow.start_run`` with the same
  params and metrics (``log_params``/``log_metrics``) and the git sha as a tag.

The two alternate; the ratio of medians is reported (goal <= 1.3). A second variant adds
``--outputs model/`` (``dvc add`` + ``dvc push`` of 1 MB), reported without a goal.
Publish latency: ``ModelService.publish`` of a pickled scikit-learn model (logged through
``mlflow.sklearn`` and registered) and of an existing run's model, each with an alias.

    .venv/bin/python -m bench.bench_commit [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hub_ext.services.mlflow.service import MLFLOW_SERVER_ENV, mlflow_server_command

from .common import cpu_contention, log, machine_info, table, write_result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlflow(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    import requests

    port = free_port()
    proc = subprocess.Popen(
        mlflow_server_command(base, port),
        env={**os.environ, **MLFLOW_SERVER_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError("mlflow server did not start")


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_project(root: Path) -> None:
    root.mkdir(parents=True)
    for i in range(5):
        (root / f"module_{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * 20)
    (root / "params.yaml").write_text("model:\n  lr: 0.1\n  depth: 6\nseed: 42\n")
    (root / "train.py").write_text("print('training')\n")


PARAMS = {"lr": "0.1", "depth": "6", "seed": "42", "optimizer": "adam"}
METRICS = {"auc": 0.91, "accuracy": 0.87, "loss": 0.31}


def by_hand(root: Path, url: str, round_no: int) -> float:
    import mlflow

    (root / "train.py").write_text(f"print('training round {round_no}')\n")
    started = time.perf_counter()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"round {round_no}")
    sha = git(root, "rev-parse", "HEAD")
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("by-hand")
    with mlflow.start_run(tags={"git_sha": sha}):
        mlflow.log_params(PARAMS)
        mlflow.log_metrics(METRICS)
    return time.perf_counter() - started


def with_dsdata(service: Any, round_no: int, outputs: list[str]) -> float:
    root = service.root
    (root / "train.py").write_text(f"print('training round {round_no}')\n")
    if outputs:
        (root / "model").mkdir(exist_ok=True)
        (root / "model" / "weights.bin").write_bytes(os.urandom(1 << 20))
    started = time.perf_counter()
    result = service.commit(f"round {round_no}", params=PARAMS, metrics=METRICS, outputs=outputs)
    elapsed = time.perf_counter() - started
    assert result.run_id, result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--publishes", type=int, default=3)
    args = parser.parse_args()

    contention = cpu_contention()
    base = Path(tempfile.mkdtemp(prefix="bench-commit-"))
    os.environ["DVC_SITE_CACHE_DIR"] = str(base / "dvc-site")
    proc, url = start_mlflow(base / "mlflow")
    try:
        import mlflow  # noqa: F401  (import cost outside the timings)

        from server_ext.experiments import ExperimentService
        from server_ext.models import ModelService

        os.environ.update(MLFLOW_TRACKING_URI=url, JUPYTERHUB_USER="bench")
        hand_root, ds_root, out_root = base / "by-hand", base / "dsdata", base / "dsdata-out"
        for root in (hand_root, ds_root, out_root):
            make_project(root)
        git(hand_root, "init", "-q", "-b", "main")
        service = ExperimentService(root=ds_root)
        outputs_service = ExperimentService(root=out_root, dvc_remote=str(base / "dvc-remote"))
        # warm-up: first-run costs (experiment creation, imports, git/DVC init) on both sides
        by_hand(hand_root, url, -1)
        with_dsdata(service, -1, [])
        with_dsdata(outputs_service, -1, ["model"])
        hand, ours, ours_out = [], [], []
        for i in range(args.rounds):
            order = [0, 1, 2] if i % 2 == 0 else [2, 1, 0]
            for which in order:
                if which == 0:
                    hand.append(by_hand(hand_root, url, i))
                elif which == 1:
                    ours.append(with_dsdata(service, i, []))
                else:
                    ours_out.append(with_dsdata(outputs_service, i, ["model"]))
            log(
                f"round {i}: hand {hand[-1]:.3f}s dsdata {ours[-1]:.3f}s with outputs {ours_out[-1]:.3f}s"
            )

        # publish latency
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        X = pd.DataFrame({"tenure": [1.0, 5.0, 20.0, 40.0], "calls": [9.0, 7.0, 1.0, 0.0]})
        model = LogisticRegression().fit(X, [1, 1, 0, 0])
        (ds_root / "out").mkdir(exist_ok=True)
        with open(ds_root / "out" / "model.pkl", "wb") as f:
            pickle.dump(model, f)
        models = ModelService(service)
        from_path, from_run = [], []
        last_run = None
        for i in range(args.publishes):
            t = time.perf_counter()
            published = models.publish("bench-churn", path="out/model.pkl", alias="staging")
            from_path.append(time.perf_counter() - t)
            last_run = published["run_id"]
            t = time.perf_counter()
            models.publish("bench-churn-2", run_id=last_run, alias="production")
            from_run.append(time.perf_counter() - t)
            log(f"publish {i}: from path {from_path[-1]:.2f}s, from run {from_run[-1]:.2f}s")
    finally:
        proc.terminate()
        proc.wait(30)

    med = statistics.median
    ratio = med(ours) / med(hand)
    rows = [
        ("git commit + MLflow run by hand (anchor)", med(hand), max(hand), "1.00"),
        ("%dsdata commit (code, params, metrics)", med(ours), max(ours), f"{ratio:.2f}"),
        ("%dsdata commit --outputs model/ (1 MB, dvc add+push)", med(ours_out), max(ours_out),
         f"{med(ours_out) / med(hand):.2f}"),
        ("%dsdata publish --path model.pkl --alias", med(from_path), max(from_path), "-"),
        ("%dsdata publish --run RUN --alias", med(from_run), max(from_run), "-"),
    ]  # fmt: skip
    print(table(["operation", "median s", "max s", "ratio to anchor"], rows))
    print(
        f"\ncommit ratio {ratio:.2f} (goal <= 1.3): {'meets goal' if ratio <= 1.3 else 'misses goal'}"
    )
    write_result(
        "bench_commit",
        {
            "rounds": args.rounds,
            "by_hand_s": hand,
            "dsdata_commit_s": ours,
            "dsdata_commit_outputs_s": ours_out,
            "publish_path_s": from_path,
            "publish_run_s": from_run,
            "ratio": ratio,
            "goal": 1.3,
            "machine": machine_info(["server_ext"]),
            "contention_before": contention,
        },
    )


if __name__ == "__main__":
    main()
