"""MLflow behind hub identity, from real sandbox kernels with plain MLflow client code.

The hub-managed MLflow runs MLflow's auth app with the platform's plugin: a sandbox's
``MLFLOW_TRACKING_TOKEN`` (its hub token) says who it is. bob may read alice's runs and
models but not delete her run, retag it, create versions of her model, move its aliases or
delete it; nobody moves a protected alias directly, not even alice; without a credential
nothing is served; carol, who shares a group with alice, may edit but not delete.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .hub import ADMIN_TOKEN, HubProcess
from .test_hub_spawn import run_in_kernel

pytestmark = [pytest.mark.hub, pytest.mark.filterwarnings("ignore::FutureWarning")]

SITE = (
    TEST_POLICY
    + """
c.JupyterHub.load_groups = {"ml-research": {"users": ["alice", "carol"]}}
c.PlatformMLflow.sharing_groups = ["ml-research"]
c.ModelGovernance.protected_aliases = ["production"]
c.Authenticator.admin_users = {"admin", "root-admin"}
"""
)

PROBE = """
import json, os
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient()
def attempt(fn):
    try:
        fn()
        return "ok"
    except MlflowException as e:
        return e.error_code
"""


@pytest.fixture(scope="module")
def mhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("mlflow-hub"), SITE).start()
    try:
        hub.wait_mlflow()
        for user in ("alice", "bob", "carol"):
            assert hub.spawn(user, "", {"profile": "cpu-small"}).status_code in (201, 202)
        for user in ("alice", "bob", "carol"):
            hub.wait_ready(user, "", timeout=120)
        yield hub
    finally:
        hub.shutdown()


def in_kernel(hub: HubProcess, user: str, code: str) -> dict[str, Any]:
    out = run_in_kernel(hub, user, "", PROBE + textwrap.dedent(code))
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def alices(mhub: HubProcess) -> dict[str, Any]:
    """alice's experiment, run and registered model (version 1, alias staging)."""
    return in_kernel(
        mhub,
        "alice",
        """
        exp = client.create_experiment("alice-exp")
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "lr", "0.1")
        client.create_registered_model("alice-model")
        v = client.create_model_version("alice-model", f"{run.info.artifact_uri}/model",
                                        run.info.run_id)
        client.set_registered_model_alias("alice-model", "staging", v.version)
        print(json.dumps({"experiment": exp, "run": run.info.run_id, "version": v.version,
                          "token": bool(os.environ.get("MLFLOW_TRACKING_TOKEN"))}))
    """,
    )


def test_the_sandbox_talks_to_mlflow_as_its_user(mhub: HubProcess, alices: dict) -> None:
    assert alices["token"] is True
    code = """
        import urllib.request
        url = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/users/current"
        headers = {"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]}
        me = json.load(urllib.request.urlopen(urllib.request.Request(url, headers=headers)))
        exp = client.get_experiment_by_name("alice-exp").experiment_id
        scratch = client.create_run(exp).info.run_id
        print(json.dumps({"user": me["user"]["username"], "admin": me["user"]["is_admin"],
                          "delete her own run": attempt(lambda: client.delete_run(scratch))}))
    """
    # MLflow knows her by her hub token: the creator manages what she made
    assert in_kernel(mhub, "alice", code) == {
        "user": "alice", "admin": False, "delete her own run": "ok",
    }  # fmt: skip


def test_bob_may_read_but_not_change_alices_work(mhub: HubProcess, alices: dict) -> None:
    got = in_kernel(
        mhub,
        "bob",
        f"""
        run, exp, version = {alices["run"]!r}, {alices["experiment"]!r}, {alices["version"]!r}
        print(json.dumps({{
            "read run": attempt(lambda: client.get_run(run)),
            "read model": attempt(lambda: client.get_registered_model("alice-model")),
            "delete run": attempt(lambda: client.delete_run(run)),
            "retag run": attempt(lambda: client.set_tag(run, "dsdata.git_sha", "b0b")),
            "log to run": attempt(lambda: client.log_param(run, "evil", "1")),
            "delete experiment": attempt(lambda: client.delete_experiment(exp)),
            "new version": attempt(lambda: client.create_model_version("alice-model", "s3://bob/m", run)),
            "move alias": attempt(lambda: client.set_registered_model_alias("alice-model", "staging", version)),
            "model tag": attempt(lambda: client.set_registered_model_tag("alice-model", "x", "y")),
            "delete model": attempt(lambda: client.delete_registered_model("alice-model")),
        }}))
    """,
    )
    assert got.pop("read run") == "ok" and got.pop("read model") == "ok"
    assert got == dict.fromkeys(got, "PERMISSION_DENIED"), got
    # nothing of it happened
    check = in_kernel(
        mhub,
        "alice",
        f"""
        r = client.get_run({alices["run"]!r})
        m = client.get_registered_model("alice-model")
        print(json.dumps({{"status": r.info.lifecycle_stage, "tags": "dsdata.git_sha" in r.data.tags,
                          "params": r.data.params, "versions": len(client.search_model_versions("name='alice-model'"))}}))
    """,
    )
    assert check == {"status": "active", "tags": False, "params": {"lr": "0.1"}, "versions": 1}


def test_nobody_moves_a_protected_alias_directly(mhub: HubProcess, alices: dict) -> None:
    got = in_kernel(
        mhub,
        "alice",
        f"""
        version = {alices["version"]!r}
        print(json.dumps({{
            "set production": attempt(lambda: client.set_registered_model_alias("alice-model", "production", version)),
            "set canary": attempt(lambda: client.set_registered_model_alias("alice-model", "canary", version)),
        }}))
    """,
    )
    assert got == {"set production": "PERMISSION_DENIED", "set canary": "ok"}


def test_a_sharing_group_member_may_edit_but_not_delete(mhub: HubProcess, alices: dict) -> None:
    got = in_kernel(
        mhub,
        "carol",
        f"""
        run, exp = {alices["run"]!r}, {alices["experiment"]!r}
        print(json.dumps({{
            "tag run": attempt(lambda: client.set_tag(run, "reviewed-by", "carol")),
            "new version": attempt(lambda: client.create_model_version("alice-model", "s3://carol/m", run)),
            "delete run": attempt(lambda: client.delete_run(run)),
            "delete model": attempt(lambda: client.delete_registered_model("alice-model")),
        }}))
    """,
    )
    assert got == {"tag run": "ok", "new version": "ok", "delete run": "PERMISSION_DENIED",
                   "delete model": "PERMISSION_DENIED"}  # fmt: skip


def test_mlflow_answers_nothing_without_a_credential(mhub: HubProcess) -> None:
    url = mhub.mlflow_url
    for path in ("/api/2.0/mlflow/experiments/search?max_results=5",
                 "/api/2.0/mlflow/registered-models/search"):  # fmt: skip
        assert requests.get(url + path, timeout=10).status_code == 401
        bogus = {"Authorization": "Bearer not-a-hub-token"}
        assert requests.get(url + path, headers=bogus, timeout=10).status_code == 401
    # a hub service that is not trusted may not use it either
    service = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the tests' own hub service
    assert requests.get(url + "/api/2.0/mlflow/registered-models/search", headers=service,
                        timeout=10).status_code == 403  # fmt: skip
    assert requests.get(url + "/health", timeout=10).status_code == 200  # probes stay open
    # from a sandbox too: the bare port without the token
    got = in_kernel(
        mhub,
        "bob",
        f"""
        import urllib.request, urllib.error
        try:
            urllib.request.urlopen({url!r} + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        print(json.dumps({{"status": status}}))
    """,
    )
    assert got == {"status": 401}


def test_an_admin_may_do_anything(mhub: HubProcess, alices: dict) -> None:
    from mlflow import MlflowClient

    token = mhub.token_for("root-admin")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    r = session.post(f"{mhub.mlflow_url}/api/2.0/mlflow/runs/set-tag",
                     json={"run_id": alices["run"], "key": "audited", "value": "yes"}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    assert MlflowClient  # the same through the client: it sends MLFLOW_TRACKING_TOKEN
