"""The pure parts of model governance: gates, the rollback target, name quoting, version
checks, and the start-up checks of ModelGovernance and ModelServing."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from traitlets.config import Config

from hub_ext.errors import ConfigError
from hub_ext.services.catalog.errors import CatalogError
from hub_ext.services.catalog.gates import Candidate, gates
from hub_ext.services.catalog.governance import check as check_governance
from hub_ext.services.catalog.model_registry import check_version
from hub_ext.services.catalog.promotions import previous_version
from hub_ext.services.serving.files import model_key, pack, unpack
from hub_ext.services.serving.settings import check as check_serving
from server_ext.registry_names import ModelNameError, name_filter

SIG = {"inputs": [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}],
       "outputs": [{"name": None, "type": "long"}]}  # fmt: skip
LINEAGE = {"dsdata.git_sha": "a" * 40, "dsdata.dataset.churn": "v1@abc"}


def by_name(candidate: Candidate, current: Candidate | None, metric: str = "auc",
            direction: str = "higher") -> dict[str, bool]:  # fmt: skip
    return {g.name: g.passed for g in gates(candidate, current, metric, direction)}


def test_gates_pass_for_a_compatible_better_version_with_lineage() -> None:
    current = Candidate("1", SIG, {"auc": 0.8}, LINEAGE)
    assert by_name(Candidate("2", SIG, {"auc": 0.85}, LINEAGE), current) == {
        "signature": True, "metric": True, "lineage": True}  # fmt: skip
    # the first promotion has nothing to compare with, and says so
    first = gates(Candidate("1", SIG, {"auc": 0.8}, LINEAGE), None, "auc")
    assert all(g.passed for g in first) and "nothing to compare" in first[1].detail


def test_gates_fail_with_reasons() -> None:
    current = Candidate("1", SIG, {"auc": 0.8}, LINEAGE)
    narrower = {"inputs": [{"name": "x1", "type": "string"}], "outputs": SIG["outputs"]}
    found = {g.name: g for g in gates(Candidate("2", narrower, {"auc": 0.7}, {}), current, "auc")}
    assert not found["signature"].passed and "missing inputs x2" in found["signature"].detail
    assert "x1 double->string" in found["signature"].detail
    assert not found["metric"].passed and "worse than" in found["metric"].detail
    assert not found["lineage"].passed and "git sha and dataset versions" in found["lineage"].detail
    # lower is better (rmse), and a run without the metric fails
    assert by_name(Candidate("2", SIG, {"rmse": 1.0}, LINEAGE),
                   Candidate("1", SIG, {"rmse": 2.0}, LINEAGE), "rmse", "lower")["metric"]  # fmt: skip
    assert not by_name(Candidate("2", SIG, {}, LINEAGE), current)["metric"]
    assert not by_name(Candidate("2", None, {"auc": 0.9}, LINEAGE), current)["signature"]
    # no gate metric configured: no metric gate
    assert "metric" not in by_name(Candidate("2", SIG, {}, LINEAGE), current, metric="")


def event(kind: str, frm: str | None, to: str, alias: str = "production") -> dict:
    return {"alias": alias, "event": kind, "from_version": frm, "to_version": to}


def test_rollback_undoes_the_approval_that_made_the_current_version() -> None:
    history = [event("requested", None, "1"), event("approved", None, "1"),
               event("approved", "1", "2"), event("approved", "2", "3")]  # fmt: skip
    assert previous_version(history, "production", "3") == "2"
    history.append(event("rollback", "3", "2"))
    assert previous_version(history, "production", "2") == "1"
    assert previous_version(history, "production", "1") is None  # nothing before the first
    assert previous_version(history, "staging", "3") is None  # other aliases are separate


def test_names_enter_filters_as_one_literal() -> None:
    assert name_filter("churn") == "name='churn'"
    assert name_filter("zz'evil") == 'name="zz\'evil"'
    with pytest.raises(ModelNameError):
        name_filter("both'\"kinds")


@pytest.mark.parametrize("bad", ["99999999999999999999999", "0", "-1", "1.5", "", " ", "1e3"])
def test_versions_are_small_positive_integers(bad: str) -> None:
    with pytest.raises(CatalogError) as caught:
        check_version(bad)
    assert caught.value.status == 404 and caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert check_version(" 12 ") == "12"


def test_model_keys_do_not_follow_the_name() -> None:
    assert model_key("../../etc", "3").startswith("m-") and "/" not in model_key("../x", "1")
    assert model_key("a", "1") != model_key("b", "1") != model_key("a", "2")


def test_a_model_archive_cannot_leave_its_directory(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    target = tmp_path / "served" / "m-1"
    target.parent.mkdir()
    unpack(pack(model), target)
    assert (target / "MLmodel").read_text() == "flavors: {}\n"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(tarfile.TarError):
        unpack(evil.getvalue(), tmp_path / "served" / "m-2")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "served" / "m-2").exists()
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == ["m-1"]  # no staging left


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ModelGovernance.gate_metric_direction", "up", "c.ModelGovernance.gate_metric_direction"),
        ("ModelGovernance.protected_aliases", ["latest"], "c.ModelGovernance.protected_aliases"),
        ("ModelGovernance.protected_aliases", ["a b"], "c.ModelGovernance.protected_aliases"),
        ("ModelServing.max_workers", 0, "c.ModelServing.max_workers"),
        ("ModelServing.request_timeout", -1.0, "c.ModelServing.request_timeout"),
        ("ModelServing.account", "Root!", "c.ModelServing.account"),
        ("ModelServing.account_uid_range", (0, 10), "c.ModelServing.account_uid_range"),
        ("ModelServing.manager_url", "serving:8000", "c.ModelServing.manager_url"),
    ],
)
def test_bad_settings_stop_the_hub_naming_the_key(key: str, value: object, message: str) -> None:
    section, name = key.split(".")
    c = Config()
    setattr(c[section], name, value)
    with pytest.raises(ConfigError) as caught:
        check_governance(c)
        check_serving(c)
    assert str(caught.value).startswith(message)
