"""Serving workers without a hub: the pool on this machine (as the serving account when
root), and the serving manager the chart runs, reached over HTTP as the catalog does."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hub_ext.services.serving.files import model_key, pack
from hub_ext.services.serving.pool import WorkerPool
from hub_ext.services.serving.remote import RemoteServing
from hub_ext.spawners.accounts import Account, ensure_account

from .hub import free_port, traversable

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]  # fmt: skip

SPLIT = json.dumps(
    {"dataframe_split": {"columns": ["x1", "x2"], "data": [[2.0, 1.0], [-2.0, -1.0]]}}
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A logistic regression, and a model whose loading fails."""
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("served-models")
    traversable(root)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(100, 2)), columns=["x1", "x2"])
    y = (x["x1"] + x["x2"] > 0).astype(int)
    mlflow.sklearn.save_model(LogisticRegression().fit(x, y), str(root / "lr"),
                              input_example=x.head(2))  # fmt: skip
    mlflow.sklearn.save_model(LogisticRegression().fit(x, 1 - y), str(root / "flipped"),
                              input_example=x.head(2))  # fmt: skip
    broken = root / "broken"
    mlflow.sklearn.save_model(LogisticRegression().fit(x, y), str(broken))
    for saved in (*broken.glob("*.pkl"), *broken.glob("*.skops")):
        saved.write_bytes(b"not a model")
    return {"lr": root / "lr", "flipped": root / "flipped", "broken": broken}


def serving_account(root: Path) -> Account | None:
    if os.geteuid() != 0:
        return None
    return ensure_account("dsplatform-serving", root / "work", "tests", (19000, 19999))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_the_pool_serves_bounds_and_recovers(tmp_path: Path, models: dict[str, Path]) -> None:
    traversable(tmp_path)
    account = serving_account(tmp_path / "serving")

    async def scenario() -> dict[str, object]:
        pool = WorkerPool(tmp_path / "serving", max_workers=1, start_timeout=60,
                          request_timeout=10, account=account)  # fmt: skip
        try:
            first = await pool.invoke("lr", models["lr"], SPLIT.encode(), "application/json")
            lr_pid = pool.status()[0]["pid"]
            csv = await pool.invoke("lr", models["lr"], b"x1,x2\n2.0,1.0\n", "text/csv")
            flipped = await pool.invoke("flipped", models["flipped"], SPLIT.encode(),
                                        "application/json")  # fmt: skip
            alive = [w["key"] for w in pool.status()]
            broken = await pool.invoke("broken", models["broken"], SPLIT.encode(),
                                       "application/json")  # fmt: skip
            again = await pool.invoke("lr", models["lr"], SPLIT.encode(), "application/json")
            return {"first": first, "csv": csv, "flipped": flipped, "alive": alive,
                    "broken": broken, "again": again, "lr_pid": lr_pid,
                    "starts": pool.starts}  # fmt: skip
        finally:
            pool.close()

    got = run(scenario())
    assert isinstance(got, dict)
    assert json.loads(got["first"].body) == {"predictions": [1, 0]}
    assert json.loads(got["csv"].body) == {"predictions": [1]}
    assert json.loads(got["flipped"].body) == {"predictions": [0, 1]}
    assert got["alive"] == ["flipped"]  # max_workers=1: the least recently used one stopped
    with pytest.raises(ProcessLookupError):
        os.kill(got["lr_pid"], 0)
    broken = got["broken"]
    assert (
        broken.status == 502 and json.loads(broken.body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    )
    assert "could not be loaded" in json.loads(broken.body)["message"]
    assert got["again"].status == 200 and got["starts"] == 4


def test_a_worker_runs_as_the_serving_account(tmp_path: Path, models: dict[str, Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch accounts")
    traversable(tmp_path)
    account = serving_account(tmp_path / "serving")
    assert account is not None

    async def scenario() -> str:
        pool = WorkerPool(tmp_path / "serving", account=account)
        try:
            await pool.invoke("lr", models["lr"], SPLIT.encode(), "application/json")
            return Path(f"/proc/{pool.status()[0]['pid']}/status").read_text()
        finally:
            pool.close()

    status = run(scenario())
    assert isinstance(status, str)
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = pwd.getpwnam("dsplatform-serving").pw_uid
    assert fields["Uid"].split() == [str(uid)] * 4 and uid != 0
    assert fields["Groups"].strip() == ""  # no supplementary groups
    assert fields["NoNewPrivs"].strip() == "1"
    # the model files became readable to its group only, writable by nobody but root
    mode = (models["lr"] / "MLmodel").stat()
    assert (mode.st_uid, mode.st_gid, mode.st_mode & 0o777) == (0, account.gid, 0o640)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port, secret = free_port(), "s3cret-for-the-catalog-only"
    env = {**os.environ, "DSPLATFORM_SERVING_SECRET": secret}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub_ext.services.serving.manager", "--root", str(tmp_path / "m"),
         "--port", str(port), "--request-timeout", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
        time.sleep(0.2)
    try:
        yield url, secret
    finally:
        proc.terminate()  # as Kubernetes stops the pod's process: its workers go with it
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        left = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(tmp_path / "m") in cmdline.read_bytes().decode(errors="replace"):
                    left.append(int(cmdline.parent.name))
            except OSError:
                continue
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert proc.returncode == 0 and not left, (proc.returncode, left)


def test_the_serving_manager_takes_models_from_the_catalog_only(
    manager: tuple[str, str], models: dict[str, Path]
) -> None:
    url, secret = manager
    key = model_key("churn", "1")
    # without the secret nothing is accepted, and nothing says what is served
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.put(
            f"{url}/models/{key}", data=pack(models["lr"]), headers=headers, timeout=10
        )
        assert r.status_code == 401, r.text
        r = requests.post(
            f"{url}/models/{key}/invocations", data=SPLIT, headers=headers, timeout=10
        )
        assert r.status_code == 401, r.text
    auth = {"Authorization": f"Bearer {secret}"}
    r = requests.put(f"{url}/models/{key}", data=b"not a tarball", headers=auth, timeout=10)
    assert r.status_code == 400, r.text
    r = requests.put(f"{url}/models/../../x", data=b"", headers=auth, timeout=10)
    assert r.status_code == 404

    async def through_the_catalog() -> tuple[int, bytes, int, bytes]:
        remote = RemoteServing(url, secret, start_timeout=60, request_timeout=10)
        try:
            # the first call uploads the files, the second finds them there
            a = await remote.invoke(key, models["lr"], SPLIT.encode(), "application/json")
            b = await remote.invoke(key, models["lr"], b"{", "application/json")
            return a.status, a.body, b.status, b.body
        finally:
            remote.close()

    got = run(through_the_catalog())
    assert isinstance(got, tuple)
    assert got[0] == 200 and json.loads(got[1]) == {"predictions": [1, 0]}
    assert got[2] == 400 and json.loads(got[3])["error_code"] == "BAD_REQUEST"
    health = requests.get(f"{url}/health", timeout=10).json()
    assert [w["key"] for w in health["workers"]] == [key]
