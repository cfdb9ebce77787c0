"""The reservation Ledger (atomic reserve, release, restore) and admit()/preview(), the one
admission decision of the spawner, the usage report and bench_quota."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub_ext.admission.admit import Applicant, admit, preview
from hub_ext.admission.options import Request
from hub_ext.admission.policy import Policy
from hub_ext.admission.quota import QuotaTables, Usage
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger

from .quota_requests import PROFILES, G, req

# --- the Ledger ------------------------------------------------------------------------------

DEVICES = {"nvidia-a100": [str(i) for i in range(8)]}
FOUR = {"nvidia-a100": ["0", "1", "2", "3"]}
ROOMY = QuotaTables.from_raw(
    default={"servers": 4, "cpu": 64, "memory": "512G", "gpus": 8, "gpu_hours_per_week": 1000},
    group_pools={"ml-research": {"gpus": 3}},
    pools={"nvidia-a100": 8},
)


def reserve(ledger: Ledger, request: Request, user: str, server: str = "", **kw: Any) -> Grant:
    kw.setdefault("groups", ["ml-research"])
    kw.setdefault("tables", ROOMY)
    kw.setdefault("devices", DEVICES)
    return ledger.reserve(request, user=user, server=server, **kw)


def snapshot(ledger: Ledger, users: list[str]) -> dict[str, Any]:
    return {
        "users": {u: ledger.usage(u) for u in users},
        "ml-research": ledger.group_usage("ml-research"),
        "vision": ledger.group_usage("vision"),
        "gpus": ledger.gpus_in_use("nvidia-a100"),
        "devices": ledger.devices_in_use("nvidia-a100"),
        "grants": sorted(g.key for g in ledger.grants()),
    }


def test_reserve_assigns_lowest_free_devices_exclusively():
    ledger = Ledger()
    tables = QuotaTables.from_raw(pools={"nvidia-a100": 8})
    a = reserve(ledger, req("gpu", gpus=2), "alice", tables=tables, devices=FOUR)
    b = reserve(ledger, req("gpu", gpus=1), "bob", tables=tables, devices=FOUR)
    assert a.devices == ("0", "1")
    assert b.devices == ("2",)
    assert ledger.devices_in_use("nvidia-a100") == {"0", "1", "2"}
    assert ledger.gpus_in_use("nvidia-a100") == 3

    released = ledger.release("alice", "", a.id)
    assert released == a
    assert ledger.devices_in_use("nvidia-a100") == {"2"}
    assert ledger.gpus_in_use("nvidia-a100") == 1

    c = reserve(ledger, req("gpu", gpus=3), "carol", tables=tables, devices=FOUR)
    assert c.devices == ("0", "1", "3")
    assert ledger.devices_in_use("nvidia-a100") == {"0", "1", "2", "3"}

    # the pool says 8 but only 4 devices exist: the 5th GPU is refused (503)
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=1), "dave", tables=tables, devices=FOUR)
    assert info.value.reason == "capacity" and info.value.status_code == 503
    assert info.value.message == (
        "No free nvidia-a100 GPU: the platform has 4, 4 in use, 0 free; requested 1"
    )
    assert ledger.get("dave", "") is None


def test_grant_records_the_request():
    ledger = Ledger()
    request = req("gpu", gpus=2, cpu=4, memory="16G", disk="50G")
    grant = reserve(ledger, request, "alice", "train", groups=["ml-research", "vision"])
    assert (grant.user, grant.server, grant.profile) == ("alice", "train", "gpu")
    assert (grant.cpu, grant.memory, grant.gpus) == (4.0, 16 * G, 2)
    assert (grant.gpu_type, grant.disk) == ("nvidia-a100", 50 * G)
    assert grant.groups == ("ml-research",)  # only the groups with a pool
    assert ledger.get("alice", "train") == grant
    assert ledger.usage("alice") == Usage(servers=1, cpu=4, memory=16 * G, gpus=2)


def test_cpu_only_and_zero_gpu_grants_take_no_device():
    ledger = Ledger()
    g1 = reserve(ledger, req("cpu"), "alice")
    g2 = reserve(ledger, req("gpu", gpus=0), "alice", "second")
    assert g1.devices == g2.devices == ()
    assert g1.gpu_type is None and g2.gpu_type is None
    assert ledger.gpus_in_use("nvidia-a100") == 0
    assert ledger.usage("alice").servers == 2


def test_release_with_wrong_grant_id_does_nothing():
    ledger = Ledger()
    grant = reserve(ledger, req("gpu", gpus=2), "alice")
    before = snapshot(ledger, ["alice"])
    assert ledger.release("alice", "", "not-" + grant.id) is None
    assert ledger.release("alice", "other-server") is None
    assert ledger.release("nobody", "") is None
    assert snapshot(ledger, ["alice"]) == before

    assert ledger.release("alice", "", grant.id) == grant
    assert ledger.release("alice", "", grant.id) is None  # exactly once
    assert ledger.usage("alice") == Usage()
    assert ledger.group_usage("ml-research") == Usage()
    assert ledger.gpus_in_use("nvidia-a100") == 0
    assert ledger.devices_in_use("nvidia-a100") == set()


def test_release_without_grant_id_releases_current():
    ledger = Ledger()
    grant = reserve(ledger, req("cpu"), "alice", "s1")
    assert ledger.release("alice", "s1") == grant
    assert ledger.grants() == []


def test_refused_reserve_changes_nothing():
    ledger = Ledger()
    reserve(ledger, req("gpu", gpus=2), "alice")
    before = snapshot(ledger, ["alice", "bob"])
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "bob")  # pool of 3: 2 + 2 > 3
    assert info.value.reason == "quota" and info.value.status_code == 403
    assert snapshot(ledger, ["alice", "bob"]) == before


def test_group_pool_is_counted_across_members():
    ledger = Ledger()
    a = reserve(ledger, req("gpu", gpus=2), "alice")
    assert ledger.group_usage("ml-research").gpus == 2
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "bob")
    assert info.value.message == (
        "GPU pool of group ml-research is full: 3 GPUs shared by its members; "
        "in use 2 + requested 2 = 4"
    )
    # a non-member is not limited by the pool
    outsider = reserve(ledger, req("gpu", gpus=2), "carol", groups=["vision"])
    assert outsider.groups == ()
    assert ledger.group_usage("ml-research").gpus == 2
    # one more GPU fits in the pool
    reserve(ledger, req("gpu", gpus=1), "bob")
    assert ledger.group_usage("ml-research") == Usage(servers=2, cpu=2, memory=4 * G, gpus=3)
    ledger.release("alice", "", a.id)
    assert ledger.group_usage("ml-research").gpus == 1
    reserve(ledger, req("gpu", gpus=2), "dave")
    assert ledger.group_usage("ml-research").gpus == 3
    assert {g.user: g.devices for g in ledger.grants()} == {
        "carol": ("2", "3"),
        "bob": ("4",),
        "dave": ("0", "1"),
    }


def test_per_user_quota_counts_all_servers_of_the_user():
    tables = QuotaTables.from_raw(default={"servers": 2, "gpus": 3})
    ledger = Ledger()
    reserve(ledger, req("gpu", gpus=2), "alice", "one", tables=tables)
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "alice", "two", tables=tables)
    assert info.value.message == (
        "GPU quota exceeded: default quota allows 3 GPUs per user; running 2 + requested 2 = 4"
    )
    reserve(ledger, req("gpu", gpus=1), "alice", "two", tables=tables)
    with pytest.raises(Refusal, match="Server quota exceeded"):
        reserve(ledger, req("cpu"), "alice", "three", tables=tables)
    # another user has their own quota
    reserve(ledger, req("gpu", gpus=1), "bob", "one", tables=tables)


def test_reserve_again_for_the_same_server_replaces_the_old_grant():
    ledger = Ledger()
    first = reserve(ledger, req("gpu", gpus=2), "alice")
    second = reserve(ledger, req("gpu", gpus=3), "alice")  # 2 + 3 would exceed the pool
    assert second.id != first.id
    assert ledger.grants() == [second]
    assert ledger.usage("alice").gpus == 3
    assert ledger.group_usage("ml-research").gpus == 3
    assert ledger.release("alice", "", first.id) is None  # the stale id releases nothing
    assert ledger.usage("alice").gpus == 3


def test_grant_state_round_trip():
    ledger = Ledger()
    grant = reserve(ledger, req("gpu", gpus=2, disk="50G"), "alice", "train")
    grant = ledger.attach_session(grant, 17)
    assert ledger.get("alice", "train") == grant and grant.session_id == 17
    state = json.loads(json.dumps(grant.to_state()))  # what the hub database stores
    assert state["devices"] == ["0", "1"]
    assert state["groups"] == ["ml-research"]
    assert Grant.from_state(state) == grant
    cpu_grant = reserve(ledger, req("cpu"), "bob")
    assert Grant.from_state(json.loads(json.dumps(cpu_grant.to_state()))) == cpu_grant


def test_grant_from_old_state_without_devices_or_groups():
    state = {
        "id": "abc",
        "user": "u",
        "server": "",
        "profile": "cpu",
        "cpu": 1.0,
        "memory": G,
        "gpus": 0,
        "gpu_type": None,
        "disk": None,
    }
    grant = Grant.from_state(state)
    assert grant.devices == () and grant.groups == () and grant.session_id is None


def test_restore_after_hub_restart_keeps_totals():
    before = Ledger()
    reserve(before, req("gpu", gpus=2), "alice")
    reserve(before, req("gpu", gpus=1, cpu=3), "bob", "train")
    reserve(before, req("cpu", memory="8G"), "bob")
    reserve(before, req("gpu", gpus=1), "carol", groups=["vision"])
    users = ["alice", "bob", "carol"]
    saved = [json.dumps(g.to_state()) for g in before.grants()]

    after = Ledger()  # the hub restarted: an empty ledger, grants come from spawner state
    for state in saved:
        after.restore(Grant.from_state(json.loads(state)))
    assert snapshot(after, users) == snapshot(before, users)
    for state in saved:  # restoring again (every spawner's load_state) is idempotent
        after.restore(Grant.from_state(json.loads(state)))
    assert snapshot(after, users) == snapshot(before, users)

    # restored devices stay exclusive: a new grant gets the remaining one
    new = reserve(after, req("gpu", gpus=1), "dave", groups=[])
    assert new.devices == ("4",)
    with pytest.raises(Refusal) as info:
        reserve(after, req("gpu", gpus=4), "erin", groups=[])
    assert info.value.message == (
        "No free nvidia-a100 GPU: the platform has 8, 5 in use, 3 free; requested 4"
    )

    # a grant restored under the same key but another id replaces the old one
    grant = after.get("alice", "")
    assert grant is not None
    replacement = Grant.from_state({**grant.to_state(), "id": "other", "gpus": 1, "devices": ["0"]})
    after.restore(replacement)
    assert after.get("alice", "") == replacement
    assert after.usage("alice").gpus == 1
    assert after.devices_in_use("nvidia-a100") == {"0", "2", "3", "4"}
    assert after.group_usage("ml-research").gpus == 2


def test_shared_ledger_is_one_object():
    assert Ledger.shared() is Ledger.shared()


def test_refused_replacement_keeps_the_stale_grant() -> None:
    """A refused re-reservation of the same server leaves the earlier grant in place."""
    from hub_ext.admission.options import resolve_request
    from hub_ext.admission.profiles import parse_profiles
    from hub_ext.admission.quota import QuotaTables
    from hub_ext.admission.refusals import Refusal
    from hub_ext.admission.reservations import Ledger

    profiles = parse_profiles(
        [{"slug": "g", "gpu_type": "t", "gpu": {"default": 1, "max": 4}, "cpu": 1, "memory": "1G"}],
        {},
    )
    tables = QuotaTables.from_raw(default={"gpus": 4}, pools={"t": 4})
    ledger = Ledger()
    first = ledger.reserve(
        resolve_request({"gpus": 2}, profiles, []), user="u", server="", groups=[],
        tables=tables, devices={"t": ["0", "1", "2", "3"]},
    )  # fmt: skip
    with pytest.raises(Refusal):
        ledger.reserve(
            resolve_request({"gpus": 4}, profiles, []),
            user="u", server="", groups=[], tables=tables, devices={"t": ["0", "1", "2"]},
        )  # fmt: skip
    assert ledger.get("u", "") == first
    assert ledger.usage("u").gpus == 2


# --- admit() and preview(): the one decision -----------------------------------------------

POLICY = Policy(toolchains={}, profiles=PROFILES, quotas=ROOMY, gpu_devices=FOUR)


def test_admit_reserves_and_asks_for_gpu_hours_only_for_gpu_requests() -> None:
    ledger, asked = Ledger(), []

    def hours(user: str) -> float:
        asked.append(user)
        return 1.5

    cpu = admit({"profile": "cpu"}, Applicant("bob", "", ("ml-research",)), POLICY, ledger, hours)
    assert asked == [] and cpu.grant.gpus == 0 and ledger.get("bob", "") == cpu.grant
    gpu = admit({"profile": "gpu", "gpus": 2}, Applicant("bob", "g", ("ml-research",)), POLICY,
                ledger, hours)  # fmt: skip
    assert asked == ["bob"]
    assert gpu.request.gpus == 2 and gpu.grant.devices == ("0", "1")
    assert ledger.usage("bob") == Usage(servers=2, cpu=2, memory=4 * G, gpus=2)


def test_preview_says_what_admit_would_and_reserves_nothing() -> None:
    ledger = Ledger()
    alice = Applicant("alice", "", ("ml-research",))
    admit({"profile": "gpu", "gpus": 3}, alice, POLICY, ledger, lambda _: 0.0)  # the pool's 3
    before = (ledger.grants(), ledger.usage("alice"), ledger.gpus_in_use("nvidia-a100"))
    carol = Applicant("carol", "", ("ml-research",))
    refusal = preview({"profile": "gpu"}, carol, POLICY, ledger, lambda _: 0.0)
    assert refusal is not None and refusal.reason == "quota"
    assert refusal.message.startswith("GPU pool of group ml-research is full")
    with pytest.raises(Refusal) as raised:
        admit({"profile": "gpu"}, carol, POLICY, ledger, lambda _: 0.0)
    assert (raised.value.reason, raised.value.message) == (refusal.reason, refusal.message)
    assert preview({"profile": "cpu"}, carol, POLICY, ledger, lambda _: 0.0) is None
    assert (ledger.grants(), ledger.usage("alice"), ledger.gpus_in_use("nvidia-a100")) == before
    invalid = preview({"profile": "cpu", "cpu": 99}, carol, POLICY, ledger, lambda _: 0.0)
    assert invalid is not None and invalid.reason == "invalid"


def test_the_usage_report_previews_each_profile() -> None:
    from hub_ext.admission.usage import usage_report

    ledger = Ledger()
    admit({"profile": "gpu", "gpus": 3}, Applicant("alice", "", ("ml-research",)), POLICY, ledger,
          lambda _: 0.0)  # fmt: skip
    report = usage_report(POLICY, ledger, Applicant("carol", "", ("ml-research",)), lambda _: 2.0)
    details = {d["slug"]: d for d in report["profile_details"]}
    assert details["cpu"]["startable"] is True and details["cpu"]["refusal"] is None
    assert details["gpu"]["startable"] is False
    assert details["gpu"]["refusal"]["reason"] == "quota"
    assert report["usage"]["gpu_hours_this_week"] == 2.0
    json.dumps(report)  # the usage API's body
