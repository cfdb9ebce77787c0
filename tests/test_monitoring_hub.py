"""The hub side of operations through a real hub: dsplatform's gauges and counters on
JupyterHub's own ``/hub/metrics`` (its ``read:metrics``), the admin usage view (JSON, CSV,
the page in chromium), and the usage and dataset APIs honouring a token's scopes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import TEST_POLICY
from .hub import HubProcess
from .metrics import parse_samples
from .test_lab_e2e import ARTIFACTS, run_node

pytestmark = pytest.mark.hub

METRICS_TOKEN = "dsplatform-test-prometheus-token-0123456789"
SITE = (
    TEST_POLICY
    + f"""
c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [
    {{"name": "prometheus", "api_token": {METRICS_TOKEN!r}}}]
c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [
    {{"name": "metrics", "services": ["prometheus"], "scopes": ["read:metrics"]}}]
"""
)


@pytest.fixture(scope="module")
def uhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """alice runs the GPU profile with 2 GPUs; erin (not in ml-research) was refused it."""
    hub = HubProcess(tmp_path_factory.mktemp("usage-hub"), SITE).start()
    try:
        r = hub.spawn("alice", "", {"profile": "gpu-a100", "gpus": 2})
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("alice", timeout=120)
        refused = hub.spawn("erin", "", {"profile": "gpu-a100"})
        assert refused.status_code == 403, refused.text
        yield hub
    finally:
        hub.shutdown()


def get(hub: HubProcess, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(f"{hub.url}/hub/{path}", headers=headers, timeout=30,
                        allow_redirects=False)  # fmt: skip


def test_the_platform_gauges_are_on_the_hubs_own_metrics(uhub: HubProcess) -> None:
    assert get(uhub, "metrics", None).status_code == 403  # JupyterHub's own check
    assert get(uhub, "metrics", uhub.token_for("alice")).status_code == 403
    r = get(uhub, "metrics", METRICS_TOKEN)
    assert r.status_code == 200, r.text
    found = parse_samples(r.text)
    assert "jupyterhub_running_servers" in found  # the same registry as JupyterHub's
    a100 = (("gpu_type", "nvidia-a100"),)
    assert found["dsplatform_gpus_in_use"][a100] == 2
    assert found["dsplatform_gpus_total"][a100] == 4
    servers = found["dsplatform_servers"]
    assert servers[(("profile", "gpu-a100"), ("state", "running"))] == 1
    assert servers[(("profile", "cpu-small"), ("state", "running"))] == 0
    assert found["dsplatform_spawn_refusals_total"][(("reason", "forbidden"),)] >= 1
    assert found["dsplatform_quota_decision_seconds_count"][()] >= 2
    hours = found["dsplatform_group_gpu_hours_week"]
    assert hours[(("group", "ml-research"),)] > 0 and hours[(("group", "storm"),)] == 0


def test_the_whole_platforms_usage_for_admins(uhub: HubProcess) -> None:
    admin = uhub.token_for("admin")
    r = get(uhub, "api/dsplatform/usage?all=1", admin)
    assert r.status_code == 200, r.text
    usage = r.json()
    [server] = [s for s in usage["servers"] if s["user"] == "alice"]
    assert server["profile"] == "gpu-a100" and server["state"] == "running"
    assert server["gpus"] == 2 and len(server["devices"]) == 2 and server["age_seconds"] >= 0
    assert {"gpu_type": "nvidia-a100", "in_use": 2, "total": 4} in usage["pools"]
    [alice] = [u for u in usage["users"] if u["user"] == "alice"]
    assert alice["budget"] == 40 and alice["gpu_hours"] > 0 and alice["groups"] == ["ml-research"]
    [group] = [g for g in usage["groups"] if g["group"] == "ml-research"]
    assert group["members"] == 2 and group["budget_per_member"] == 40
    assert usage["profiles"]["gpu-a100"] == {"running": 1, "pending": 0}

    r = get(uhub, "api/dsplatform/usage?all=1&format=csv", admin)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["user"], row["profile"], len(row["devices"].split())) for row in rows] == [
        ("alice", "gpu-a100", 2)
    ]
    assert get(uhub, "api/dsplatform/usage?all=1&format=xml", admin).status_code == 400

    # not for users, nor for an admin's token narrowed to something else
    r = get(uhub, "api/dsplatform/usage?all=1", uhub.token_for("alice"))
    assert r.status_code == 403 and "read:users" in r.json()["message"], r.text
    narrow_admin = uhub.scoped_token("admin", ["read:users:name"])
    assert get(uhub, "api/dsplatform/usage?all=1", narrow_admin).status_code == 403
    assert get(uhub, "api/dsplatform/usage?user=alice", narrow_admin).status_code == 403
    assert get(uhub, "api/dsplatform/usage?user=alice", admin).json()["user"] == "alice"
    page = get(uhub, "dsplatform/usage", uhub.token_for("alice"))  # a page: login first
    assert page.status_code == 302 and "/hub/login" in page.headers["Location"]


def test_the_usage_and_dataset_apis_honour_narrowed_tokens(uhub: HubProcess) -> None:
    bob = uhub.token_for("bob")
    assert get(uhub, "api/dsplatform/usage", bob).json()["user"] == "bob"
    assert get(uhub, "api/dsplatform/datasets", bob).status_code == 200
    names_only = uhub.scoped_token("bob", ["read:users:name!user=bob"])
    r = get(uhub, "api/dsplatform/usage", names_only)
    assert r.status_code == 403 and "read:users" in r.json()["message"], r.text
    r = get(uhub, "api/dsplatform/datasets", names_only)
    assert r.status_code == 403 and "custom:dsplatform:datasets" in r.json()["message"], r.text
    catalog_only = uhub.scoped_token("bob", ["custom:dsplatform:datasets"])
    assert get(uhub, "api/dsplatform/datasets", catalog_only).status_code == 200
    assert get(uhub, "api/dsplatform/usage", catalog_only).status_code == 403
    assert get(uhub, "api/dsplatform/usage?user=alice", bob).status_code == 403


def test_the_usage_page_in_chromium(uhub: HubProcess) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    state = uhub.state / "platform"
    env = {
        "HUB_URL": uhub.url,
        "ADMIN_PASSWORD": (state / "admin_password").read_text().strip(),
        "USER_PASSWORD": (state / "user_password").read_text().strip(),
    }
    proc = run_node("usage-page.mjs", env, "usage-page.log")
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}\n{uhub.log()}"
    summary: dict[str, Any] = json.loads(proc.stdout.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["url"].endswith("/hub/dsplatform/usage")
    [alice] = [row for row in summary["servers"] if row[0] == "alice"]
    assert alice[2:5] == ["gpu-a100", "running", "1"] and len(alice[7].split(", ")) == 2
    assert summary["pools"] == [["nvidia-a100", "2", "4", "2"]]
    assert any(row[0] == "alice" and row[3] == "40" for row in summary["users"]), summary
    assert summary["csv"].endswith("usage?all=1&format=csv")
    assert summary["aliceLinks"] == 0 and summary["aliceStatus"] == 403
    assert Path(ARTIFACTS / "usage-page.png").exists()
