"""Governed models through the real hub: four-eyes promotion with gates, audit and rollback,
and models executed only in unprivileged serving workers.

alice owns a model and trains its versions in her sandbox kernel with plain MLflow calls; she
asks for promotions with ``dsdata.promote`` (what ``%dsdata promote`` calls); rita reviews with
a hub token that carries ``custom:dsplatform:approve``; paul calls the prediction API. Serving
workers are probed by models whose ``predict`` reports who they run as and what they can read,
and by models that hang or crash.
"""

from __future__ import annotations

import json
import pwd
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .hub import HubProcess
from .metrics import Samples, parse_samples
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::FutureWarning")]

PREDICT = "custom:dsplatform:predict"
APPROVE = "custom:dsplatform:approve"
ACCESS = "access:services!service=catalog"
MODEL = "churn"
REQUEST_TIMEOUT = 6

SITE = (
    TEST_POLICY
    + f"""
c.JupyterHub.load_groups = {{
    "ml-research": {{"users": ["alice", "carol"]}},
    "model-reviewers": {{"users": ["rita", "alice"]}},
    "product": {{"users": ["paul"]}},
}}
c.ModelGovernance.protected_aliases = ["production"]
c.ModelGovernance.approver_groups = ["model-reviewers"]
c.ModelGovernance.gate_metric = "auc"
c.ModelServing.request_timeout = {REQUEST_TIMEOUT}
c.ModelServing.max_workers = 3
"""
)

# in alice's kernel: a version of "churn" from a real training run, with or without lineage
TRAIN = """
import json, os
import numpy as np, pandas as pd
import mlflow, mlflow.sklearn
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
client = MlflowClient()
mlflow.set_experiment("churn")
def version(flipped, auc, lineage):
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 2)), columns=["x1", "x2"])
    y = (x["x1"] + x["x2"] > 0).astype(int)
    model = LogisticRegression().fit(x, 1 - y if flipped else y)
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", auc)
        mlflow.sklearn.log_model(model, name="model", input_example=x.head(3))
    tags = {"dsdata.git_sha": "a" * 40, "dsdata.dataset.churn-data": "v1@abc"} if lineage else {}
    v = mlflow.register_model(f"runs:/{run.info.run_id}/model", "churn", tags=tags)
    return int(v.version)
"""

FRAME = {"dataframe_split": {"columns": ["x1", "x2"], "data": [[2.0, 1.0], [-2.0, -1.0]]}}
V1_PREDICTIONS, FLIPPED_PREDICTIONS = [1, 0], [0, 1]


@pytest.fixture(scope="module")
def ghub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("governed-hub"), SITE).start()
    try:
        hub.wait_mlflow()
        for user in ("alice", "bob"):
            assert hub.spawn(user, "", {"profile": "cpu-small"}).status_code in (201, 202)
        for user in ("alice", "bob"):
            hub.wait_ready(user, "", timeout=120)
        yield hub
    finally:
        hub.shutdown()


def in_kernel(hub: HubProcess, user: str, code: str) -> Any:
    """The last JSON line the code prints (MLflow prints its own notes around it)."""
    out = run_in_kernel(hub, user, "", textwrap.dedent(code))
    for line in reversed(out.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise AssertionError(f"no JSON in the kernel's output: {out[-2000:]}")


def gateway_metrics(hub: HubProcess) -> Samples:
    """The catalog's Prometheus metrics, parsed (read with an admin's token)."""
    r = requests.get(f"{hub.url}/services/catalog/metrics", timeout=30,
                     headers={"Authorization": f"token {hub.token_for('admin')}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return parse_samples(r.text)


def catalog(hub: HubProcess, method: str, path: str, token: str, body: Any = None,
            timeout: float = 60) -> requests.Response:  # fmt: skip
    return requests.request(method, f"{hub.url}/services/catalog/{path}", json=body,
                            headers={"Authorization": f"token {token}"}, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def tokens(ghub: HubProcess) -> dict[str, str]:
    return {
        "rita": ghub.scoped_token("rita", [APPROVE, ACCESS]),
        "alice-approver": ghub.scoped_token("alice", [APPROVE, ACCESS]),
        "alice": ghub.scoped_token("alice", [ACCESS]),
        "paul": ghub.scoped_token("paul", [PREDICT, ACCESS]),
    }


@pytest.fixture(scope="module")
def versions(ghub: HubProcess) -> dict[str, int]:
    """alice's versions of churn: v1 (auc .80), v2 (flipped, auc .85), v3 (no lineage, .70)."""
    made = """
        print(json.dumps({"v1": version(False, 0.80, True), "v2": version(True, 0.85, True),
                          "v3": version(False, 0.70, False)}))
    """
    return in_kernel(ghub, "alice", TRAIN + textwrap.dedent(made))  # type: ignore[no-any-return]


def serves(hub: HubProcess, paul: str, version: int, expected: list[int]) -> None:
    """production predictions come from ``version`` within a few seconds (alias TTL)."""
    deadline = time.monotonic() + 15
    while True:
        r = catalog(hub, "POST", f"api/models/{MODEL}/production/predict", paul, FRAME)
        if r.status_code == 200 and r.headers["X-Model-Version"] == str(version):
            assert r.json()["predictions"] == expected
            return
        assert time.monotonic() < deadline, (r.status_code, r.headers, r.text[:300])
        time.sleep(0.3)


def promote_in_kernel(hub: HubProcess, version: int, note: str) -> dict[str, Any]:
    got: dict[str, Any] = in_kernel(hub, "alice", f"""
        import json
        from server_ext import dsdata
        print(json.dumps(dsdata.promote({MODEL!r}, {version}, alias="production", note={note!r})))
    """)  # fmt: skip
    return got


def test_four_eyes_promotion_and_rollback(ghub: HubProcess, tokens: dict, versions: dict) -> None:
    rita, paul = tokens["rita"], tokens["paul"]
    # nothing is served as production yet
    r = catalog(ghub, "POST", f"api/models/{MODEL}/production/predict", paul, FRAME)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", r.text
    first = promote_in_kernel(ghub, versions["v1"], "first release")
    assert first["state"] == "pending" and first["requester"] == "alice"
    assert {g["name"]: g["passed"] for g in first["gates"]} == {
        "signature": True, "metric": True, "lineage": True,
    }  # fmt: skip
    approve = f"api/models/{MODEL}/promotions/{first['id']}/approve"
    # alice's sandbox token cannot approve; alice with the approve scope cannot approve her own
    r = catalog(ghub, "POST", approve, tokens["alice"], {"reason": "mine"})
    assert r.status_code == 403 and APPROVE in r.json()["message"], r.text
    r = catalog(ghub, "POST", approve, tokens["alice-approver"], {"reason": "mine"})
    assert r.status_code == 403 and "Four eyes" in r.json()["message"], r.text
    assert r.json()["error_code"] == "PERMISSION_DENIED"
    # bob is not an owner: he cannot request a promotion of alice's model
    bob = in_kernel(ghub, "bob", f"""
        import json
        from server_ext import dsdata
        try:
            dsdata.promote({MODEL!r}, 2, alias="production")
            print(json.dumps("accepted"))
        except Exception as e:
            print(json.dumps(str(e)))
    """)  # fmt: skip
    assert "owners" in bob, bob
    r = catalog(ghub, "POST", approve, rita, {"reason": "looks good"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    serves(ghub, paul, versions["v1"], V1_PREDICTIONS)
    # a second approval of the same request is refused
    assert catalog(ghub, "POST", approve, rita, {}).status_code == 409

    second = promote_in_kernel(ghub, versions["v2"], "better auc")
    metric = next(g for g in second["gates"] if g["name"] == "metric")
    assert metric["passed"] and "0.85" in metric["detail"] and "0.8" in metric["detail"]
    r = catalog(ghub, "POST", f"api/models/{MODEL}/promotions/{second['id']}/approve", rita, {})
    assert r.status_code == 200, r.text
    serves(ghub, paul, versions["v2"], FLIPPED_PREDICTIONS)

    r = catalog(ghub, "POST", f"api/models/{MODEL}/rollback", paul, {"alias": "production"})
    assert r.status_code == 403, r.text  # paul predicts; he does not approve
    r = catalog(ghub, "POST", f"api/models/{MODEL}/rollback", rita,
                {"alias": "production", "reason": "v2 flips the labels"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"model": MODEL, "alias": "production",
                             "from_version": str(versions["v2"]), "to_version": str(versions["v1"])}  # fmt: skip
    serves(ghub, paul, versions["v1"], V1_PREDICTIONS)

    history = catalog(ghub, "GET", f"api/models/{MODEL}/history", tokens["alice"]).json()
    events = [
        (e["event"], e["actor"], e["from_version"], e["to_version"]) for e in history["events"]
    ]
    v1, v2 = str(versions["v1"]), str(versions["v2"])
    assert events == [
        ("requested", "alice", None, v1), ("approved", "rita", None, v1),
        ("requested", "alice", v1, v2), ("approved", "rita", v1, v2),
        ("rollback", "rita", v2, v1),
    ]  # fmt: skip
    assert [e["note"] for e in history["events"]][:2] == ["first release", "looks good"]
    assert all(e["time"].endswith("Z") for e in history["events"])
    # the kernel's view is the same history
    kernel = in_kernel(ghub, "alice", f"""
        import json
        from server_ext import dsdata
        print(json.dumps([e["event"] for e in dsdata.model_history({MODEL!r})["events"]]))
    """)  # fmt: skip
    assert kernel == [e[0] for e in events]
    # and each is counted in the gateway's metrics (an admin's token holds read:metrics)
    counted = gateway_metrics(ghub)["dsplatform_promotion_events_total"]
    assert {e: counted.get((("event", e), ("model", MODEL))) for e in
            ("requested", "approved", "rolled_back")} == {
        "requested": 2, "approved": 2, "rolled_back": 1}  # fmt: skip


def test_a_failing_gate_blocks_unless_overridden_with_a_reason(
    ghub: HubProcess, tokens: dict, versions: dict
) -> None:
    rita = tokens["rita"]
    third = promote_in_kernel(ghub, versions["v3"], "quick fix")
    failing = sorted(g["name"] for g in third["gates"] if not g["passed"])
    assert failing == ["lineage", "metric"], third["gates"]
    approve = f"api/models/{MODEL}/promotions/{third['id']}/approve"
    # the approver sees it on the catalog page, with the failing gates
    page = catalog(ghub, "GET", "", rita)
    assert page.status_code == 200, page.text[:300]
    assert f'data-pending="{MODEL}"' in page.text and third["id"][:8] in page.text
    assert "lineage ✗" in page.text and f'data-history="{MODEL}"' in page.text
    r = catalog(ghub, "POST", approve, rita, {"reason": "fine"})
    assert r.status_code == 409 and "lineage" in r.json()["message"], r.text
    r = catalog(ghub, "POST", approve, rita, {"override": True})
    assert r.status_code == 400 and "reason" in r.json()["message"], r.text
    r = catalog(ghub, "POST", approve, rita, {"override": True, "reason": "hotfix, lineage later"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    serves(ghub, tokens["paul"], versions["v3"], V1_PREDICTIONS)
    last = catalog(ghub, "GET", f"api/models/{MODEL}/history", rita).json()["events"][-1]
    assert last["event"] == "approved" and last["note"] == "hotfix, lineage later"
    assert sorted(g["name"] for g in last["overridden"]) == ["lineage", "metric"]
    # bad requests are 4xx with the reason, and change nothing
    for body, status in (({"version": 1}, 400), ({"version": 1, "alias": "staging"}, 400),
                         ({"version": "x", "alias": "production"}, 404),
                         ({"version": 1, "alias": "production", "extra": 1}, 400)):  # fmt: skip
        r = catalog(ghub, "POST", f"api/models/{MODEL}/promotions", tokens["alice"], body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["message"] and r.json()["error_code"], body
    r = requests.post(f"{ghub.url}/services/catalog/api/models/{MODEL}/promotions", data=b"{",
                      headers={"Authorization": f"token {tokens['alice']}"}, timeout=30)  # fmt: skip
    assert r.status_code == 400, r.text


def test_the_history_survives_a_hub_restart(ghub: HubProcess, tokens: dict, versions: dict) -> None:
    before = catalog(ghub, "GET", f"api/models/{MODEL}/history", tokens["rita"]).json()
    assert len(before["events"]) >= 5
    ghub.stop()
    ghub.start()
    deadline = time.monotonic() + 60
    while True:
        r = catalog(ghub, "GET", f"api/models/{MODEL}/history", tokens["rita"])
        if r.status_code == 200:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)
    assert r.json()["events"] == before["events"]
    assert r.json()["promotions"] == before["promotions"]


PROBE = """
import json, os
import mlflow, mlflow.pyfunc
import pandas as pd
mlflow.set_experiment("probes")

class Probe(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        def readable(path):
            try:
                with open(path, "rb") as f:
                    f.read(1)
                return "read"
            except OSError as e:
                return type(e).__name__
        paths = list(model_input["path"])
        return [json.dumps({
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "groups": os.getgroups(), "env": sorted(os.environ),
            "readable": {p: readable(p) for p in paths},
            "parent_environ": readable(f"/proc/{os.getppid()}/environ"),
        })]

with mlflow.start_run() as run:
    mlflow.pyfunc.log_model(name="model", python_model=Probe(),
                            input_example=pd.DataFrame({"path": ["/etc/hostname"]}))
v = mlflow.register_model(f"runs:/{run.info.run_id}/model", "probe")
print(json.dumps(int(v.version)))
"""


def test_models_run_unprivileged_without_hub_credentials(ghub: HubProcess, tokens: dict) -> None:
    version = in_kernel(ghub, "alice", PROBE)
    state = ghub.state / "platform"
    secrets = [state / "jupyterhub_cookie_secret", state / "jupyterhub.sqlite",
               state / "governance.sqlite", state / "users" / "alice",
               state / "mlflow" / "mlflow.db"]  # fmt: skip
    present = [str(p) for p in secrets if p.exists()]
    assert len(present) >= 4, present
    body = {"dataframe_records": [{"path": p} for p in [*present, "/etc/hostname"]]}
    r = catalog(ghub, "POST", f"api/models/probe/{version}/invocations", tokens["paul"], body)
    assert r.status_code == 200, r.text
    seen = json.loads(r.json()["predictions"][0])
    serving = pwd.getpwnam("dsplatform-serving")
    assert seen["uid"] == seen["euid"] == serving.pw_uid != 0
    assert seen["groups"] == [] or seen["groups"] == [serving.pw_gid]
    leaked = [k for k in seen["env"] if any(s in k for s in ("TOKEN", "SECRET", "JUPYTERHUB",
                                                             "MLFLOW_TRACKING", "DSPLATFORM",
                                                             "PASSWORD", "AWS", "DSDATA"))]  # fmt: skip
    assert leaked == [], seen["env"]
    assert seen["readable"].pop("/etc/hostname") == "read"  # the probe can read at all
    assert set(seen["readable"].values()) == {"PermissionError"}, seen["readable"]
    assert seen["parent_environ"] == "PermissionError"  # the catalog's token stays its own
    # the sandbox's hub token reaches no worker: the catalog's gateway is the only way in
    health = requests.get(f"{ghub.url}/services/catalog/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert requests.get(f"{ghub.url}/services/catalog/ping", timeout=10).status_code == 200


FAULTY = """
import json, os, time
import mlflow, mlflow.pyfunc
import pandas as pd
mlflow.set_experiment("probes")

class Hang(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["x"] > 0).any():
            time.sleep(3600)
        return list(model_input["x"])

class Crash(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["x"] > 0).any():
            os._exit(3)
        return list(model_input["x"])

out = {}
for name, model in (("hang", Hang()), ("crash", Crash())):
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=model,
                                input_example=pd.DataFrame({"x": [0.0]}))
    out[name] = int(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)
print(json.dumps(out))
"""


def test_a_hung_or_crashing_model_delays_no_other(
    ghub: HubProcess, tokens: dict, versions: dict
) -> None:
    faulty = in_kernel(ghub, "alice", FAULTY)
    paul = tokens["paul"]
    good = f"api/models/{MODEL}/{versions['v1']}/predict"
    calm = {"dataframe_split": {"columns": ["x"], "data": [[0.0]]}}
    bad = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}
    for name in ("hang", "crash"):  # warm: their workers are up and answer
        r = catalog(ghub, "POST", f"api/models/{name}/{faulty[name]}/predict", paul, calm)
        assert r.status_code == 200 and r.json()["predictions"] == [0.0], r.text
    assert catalog(ghub, "POST", good, paul, FRAME).status_code == 200
    answers: dict[str, requests.Response] = {}

    def call(name: str) -> None:
        answers[name] = catalog(ghub, "POST", f"api/models/{name}/{faulty[name]}/predict",
                                paul, bad)  # fmt: skip

    threads = [
        threading.Thread(target=call, args=(n,)) for n in ("hang", "crash") for _ in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    latencies = []
    for _ in range(10):  # while the hang holds its requests, the good model keeps answering
        start = time.monotonic()
        r = catalog(ghub, "POST", good, paul, FRAME)
        latencies.append(time.monotonic() - start)
        assert r.status_code == 200 and r.json()["predictions"] == V1_PREDICTIONS, r.text
    assert max(latencies) < 2.0, latencies  # a bound, not a benchmark: healthy answers ~20 ms
    for t in threads:
        t.join(REQUEST_TIMEOUT + 30)
    assert answers["crash"].status_code == 502, answers["crash"].text
    assert "exit status 3" in answers["crash"].json()["message"]
    assert answers["hang"].status_code == 504, answers["hang"].text
    assert answers["hang"].json()["error_code"] == "DEADLINE_EXCEEDED"
    # both are restarted on demand and serve again
    for name in ("hang", "crash"):
        r = catalog(ghub, "POST", f"api/models/{name}/{faulty[name]}/predict", paul, calm)
        assert r.status_code == 200, (name, r.text)
    found = gateway_metrics(ghub)
    events = found["dsplatform_serving_worker_events_total"]
    assert events[(("event", "crashed"),)] >= 1 and events[(("event", "hung"),)] >= 1, events
    calls = found["dsplatform_predictions_total"]
    crash, hang = (str(faulty[n]) for n in ("crash", "hang"))
    assert calls[(("model", "crash"), ("status", "502"), ("version", crash))] == 3
    assert calls[(("model", "hang"), ("status", "504"), ("version", hang))] >= 1


def test_odd_names_and_huge_versions_are_clean_4xx(ghub: HubProcess, tokens: dict) -> None:
    made = in_kernel(ghub, "bob", """
        import json
        from mlflow import MlflowClient
        client = MlflowClient()
        client.create_registered_model("zz'evil")
        client.create_model_version("zz'evil", "s3://nowhere/model")
        print(json.dumps("made"))
    """)  # fmt: skip
    assert made == "made"
    # plain MLflow from a sandbox: a version no model can have is a 404 at once, not a 500
    # that the client retries for minutes
    direct = in_kernel(ghub, "bob", f"""
        import json, time
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
        client = MlflowClient()
        t = time.monotonic()
        try:
            client.get_model_version({MODEL!r}, "99999999999999999999999")
            code = "ok"
        except MlflowException as e:
            code = e.error_code
        print(json.dumps({{"code": code, "seconds": time.monotonic() - t,
                          "odd": client.get_model_version("zz'evil", "1").version}}))
    """)  # fmt: skip
    assert direct["code"] == "RESOURCE_DOES_NOT_EXIST" and direct["seconds"] < 2, direct
    assert str(direct["odd"]) == "1"
    paul = tokens["paul"]
    start = time.monotonic()
    listing = catalog(ghub, "GET", "api/models", paul, timeout=10)
    assert listing.status_code == 200, listing.text
    models = {m["name"]: m for m in listing.json()["models"]}
    assert [v["version"] for v in models["zz'evil"]["versions"]] == [1]
    assert models[MODEL]["versions"]  # the others are still listed in full
    for path in (f"api/models/{MODEL}/99999999999999999999999/predict",
                 "api/models/zz'evil/99999999999999999999999/predict",
                 f"api/models/{MODEL}/0/predict", f"api/models/{MODEL}/pr%27od/predict"):  # fmt: skip
        t = time.monotonic()
        r = catalog(ghub, "POST", path, paul, FRAME, timeout=10)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert time.monotonic() - t < 2.0, path
    r = catalog(ghub, "POST", f"api/models/{MODEL}/promotions", tokens["alice"],
                {"version": "99999999999999999999999", "alias": "production"}, timeout=10)  # fmt: skip
    assert r.status_code == 404, r.text
    assert time.monotonic() - start < 10
    # and in the sandbox: %dsdata models lists every model, the odd one included
    names = in_kernel(ghub, "alice", """
        import json
        from server_ext import dsdata
        print(json.dumps(sorted(m["name"] for m in dsdata.models())))
    """)  # fmt: skip
    assert "zz'evil" in names and MODEL in names
    # predictions still work
    r = catalog(ghub, "POST", f"api/models/{MODEL}/production/predict", paul, FRAME)
    assert r.status_code == 200, r.text
