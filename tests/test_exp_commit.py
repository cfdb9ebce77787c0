"""``commit``: code (git), outputs (DVC), params, metrics, environment -> one MLflow run.

Real git, real DVC (a local directory as the DVC remote), a real ``mlflow server``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from server_ext import dsdata
from server_ext.errors import InvalidReference
from server_ext.experiments import ExperimentService, NothingToCommit
from server_ext.params import parse_pairs

from .mlflow_server import Project, mlflow_server_fixture, project_fixture  # noqa: F401
from .registries import Registry, dvc_site_cache_fixture, registry_fixture  # noqa: F401

TOKEN = "hub-token-0123456789abcdef"  # what a sandbox's JUPYTERHUB_API_TOKEN looks like


def write_project(root: Path, weights: bytes = b"weights-1") -> None:
    (root / "train.py").write_text("import pandas\nprint('training')\n")
    (root / "params.yaml").write_text("model:\n  depth: 3\n  optimizer:\n    lr: 0.01\nseed: 7\n")
    (root / "metrics.json").write_text(json.dumps({"accuracy": 0.93, "val": {"loss": 0.25}}))
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "weights.bin").write_bytes(weights)
    (root / "model" / "config.json").write_text('{"layers": 2}\n')


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def committed_files(project: Project, rev: str = "HEAD") -> set[str]:
    return set(project.git("show", "--name-only", "--format=", rev).splitlines())


def test_commit_records_one_run_with_lineage(project: Project, registry: Registry) -> None:
    iris = dsdata.pull("iris@v1")
    multi = dsdata.pull("multi", "data/multi")
    write_project(project.root)

    result = dsdata.commit(
        "baseline: depth 3",
        params={"lr": "0.1", "batch size": "32"},
        metrics={"auc": "0.91"},
        params_file="params.yaml",
        metrics_file="metrics.json",
        outputs=["model"],
    )

    # git: one commit with the code, the .dvc file, lineage, params; data and outputs left out
    head = project.git("rev-parse", "HEAD")
    assert result.git_sha == head and re.fullmatch(r"[0-9a-f]{40}", head)
    assert result.queued is False and result.note == ""
    assert re.fullmatch(r"[0-9a-f]{32}", result.run_id or "")
    assert result.experiment == project.experiment
    files = committed_files(project)
    assert {
        "train.py", "params.yaml", "metrics.json", "model.dvc", ".dsdata/lineage.json",
        ".dsdata/environment.json", ".gitignore", ".dvc/config",
    } <= files  # fmt: skip
    assert not any(
        f.startswith(("data/", "model/", ".dsdata/queue", ".dsdata/state")) for f in files
    )
    assert "/data/" in (project.root / ".gitignore").read_text().splitlines()
    assert project.git("status", "--porcelain") == ""
    message = project.git("log", "-1", "--format=%B")
    assert message.startswith("baseline: depth 3\n")
    assert f"Dsdata-Commit: {result.commit_id}" in message
    assert json.loads(project.git("show", "HEAD:.dsdata/lineage.json"))["pulls"][0]["rev"] == (
        iris.rev
    )

    # DVC: the outputs are in the remote directory, under the hashes model.dvc records
    dir_md5 = result.outputs["model"]
    assert dir_md5.endswith(".dir")
    assert f"md5: {dir_md5}" in (project.root / "model.dvc").read_text()
    objects = project.remote_objects()
    assert {dir_md5, md5(b"weights-1"), md5(b'{"layers": 2}\n')} <= objects

    # MLflow: one run with params (file keys flattened with '.'), metrics, tags, inputs
    [run] = project.runs()
    assert run.info.run_id == result.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "model.depth": "3", "model.optimizer.lr": "0.01", "seed": "7",
        "lr": "0.1", "batch size": "32",
    }  # fmt: skip
    assert run.data.metrics == {"accuracy": 0.93, "val.loss": 0.25, "auc": 0.91}
    tags = run.data.tags
    assert tags["dsdata.git_sha"] == head
    assert tags["dsdata.commit_id"] == result.commit_id
    assert tags["dsdata.profile"] == "cpu-small"
    assert tags["mlflow.user"] == "alice"
    assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.note.content"] == "baseline: depth 3"
    assert tags["dsdata.dataset.iris"] == f"v1.1.0@{registry.rev('iris@v1.1.0')}"
    assert tags["dsdata.dataset.multi"] == f"v1.0.0@{registry.rev('multi@v1.0.0')}"
    for key in ("dsdata.dataset.iris", "dsdata.dataset.multi"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+@[0-9a-f]{40}", tags[key])
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["iris", "multi"]
    for pulled in (iris, multi):
        dataset = inputs[pulled.dataset].dataset
        assert dataset.source_type == "dvc"
        assert dataset.digest == pulled.content_hash
        source = json.loads(dataset.source)
        assert (source["rev"], source["tag"], source["path"]) == (
            pulled.rev, pulled.tag, pulled.path,
        )  # fmt: skip
        assert {t.key: t.value for t in inputs[pulled.dataset].tags}["dsdata.version"] == (
            pulled.version
        )

    # the environment spec: profile, resources, packages (and no environment variables)
    client = project.client()
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["environment.json"]
    local = client.download_artifacts(run.info.run_id, "environment.json", str(project.root.parent))
    env = json.loads(Path(local).read_text())
    assert env["profile"] == "cpu-small"
    assert env["resources"]["cpu"] == 1.0 and env["resources"]["memory"] == "1G"
    assert any(p.startswith("mlflow==") for p in env["packages"])
    assert any(p.startswith("dvc==") for p in env["packages"])
    assert "MLFLOW_TRACKING_URI" not in Path(local).read_text()
    assert list((project.root / ".dsdata" / "queue").glob("*")) == []

    # a second experiment: new sha, new run; log lists both, newest first
    (project.root / "params.yaml").write_text("model:\n  depth: 5\n")
    (project.root / "model" / "weights.bin").write_bytes(b"weights-2")
    second = dsdata.commit("deeper", params_file="params.yaml", outputs=["model"])
    assert second.git_sha != head and second.run_id != result.run_id
    assert committed_files(project) >= {"params.yaml", "model.dvc"}
    assert md5(b"weights-2") in project.remote_objects()
    assert project.client().get_run(second.run_id).data.params == {"model.depth": "5"}
    rows = dsdata.log(5)
    assert [r["run_id"] for r in rows] == [second.run_id, result.run_id]
    assert [r["message"] for r in rows] == ["deeper", "baseline: depth 3"]
    assert rows[1]["metrics"] == {"accuracy": 0.93, "val.loss": 0.25, "auc": 0.91}
    assert rows[1]["datasets"]["iris"].startswith("v1.1.0@")
    assert all(r["status"] == "finished" and r["run_id"] in r["url"] for r in rows)
    assert [r["run_id"] for r in dsdata.log(1)] == [second.run_id]


def test_parse_pairs() -> None:
    assert parse_pairs(["lr=0.1", " depth = 3 ", "expr=a=b", "empty="], "param") == {
        "lr": "0.1", "depth": "3", "expr": "a=b", "empty": "",
    }  # fmt: skip
    for bad, fragment in [
        ("lr", "use key=value"),
        ("=0.1", "use key=value"),
        ("bad!key=1", "Invalid param name 'bad!key'"),
        ("x" * 251 + "=1", "Invalid param name"),
        ("api_key=abc", "looks like a secret"),
        ("db_password=abc", "looks like a secret"),
        ("GITHUB_TOKEN=abc", "looks like a secret"),
    ]:
        with pytest.raises(InvalidReference, match=re.escape(fragment)):
            parse_pairs([bad], "param")


def test_bad_commits_change_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    write_project(project.root)
    good = dsdata.commit("baseline", params={"lr": "0.1"}, outputs=["model"])
    head, runs = good.git_sha, 1
    service = ExperimentService()

    def refused(fragment: str, **kwargs: object) -> None:
        kwargs.setdefault("message", "should not be committed")
        with pytest.raises(InvalidReference, match=re.escape(fragment)):
            service.commit(**kwargs)  # type: ignore[arg-type]
        assert project.head() == head, kwargs
        assert project.git("diff", "--cached", "--name-only") == "", kwargs  # nothing staged
        assert len(project.runs()) == runs, kwargs
        assert service.queued() == []

    (project.root / "train.py").write_text("print('changed')\n")  # there is something to commit
    refused("A commit message is required", message="")
    refused("A commit message is required", message="   \n")
    refused("looks like a secret", params={"api_key": "abc"})
    refused("looks like a secret", params={"aws_secret": "abc"})
    refused("looks like a secret", metrics={"password_len": 3})
    refused("Invalid param name", params={"bad;key": "1"})
    refused("its value is a token of this sandbox", params={"auth": TOKEN})
    refused("its value is a token of this sandbox", params={"header": f"Bearer {TOKEN}"})
    (project.root / "cfg.yaml").write_text(f"client:\n  header: {TOKEN}\n")
    refused("its value is a token of this sandbox", params_file="cfg.yaml")
    refused("is not a number", metrics={"auc": "high"})
    refused("is not a finite number", metrics={"auc": "nan"})
    refused("is not a finite number", metrics={"loss": float("inf")})
    (project.root / "bad-metrics.json").write_text('{"acc": "good"}')
    refused("Metric acc='good' is not a number", metrics_file="bad-metrics.json")
    (project.root / "list.yaml").write_text("- 1\n- 2\n")
    refused("must hold a mapping", params_file="list.yaml")
    (project.root / "broken.json").write_text("{not json")
    refused("is not valid JSON/YAML", metrics_file="broken.json")
    refused("params file 'nope.yaml' does not exist", params_file="nope.yaml")
    refused("Output 'nope' does not exist", outputs=["nope"])
    refused("is outside the project", outputs=["../dvc-remote"])
    for name in ("cfg.yaml", "bad-metrics.json", "list.yaml", "broken.json"):
        (project.root / name).unlink()

    # a file holding the sandbox's token, a key file: refused, nothing committed
    (project.root / "notes.txt").write_text(f"my token is {TOKEN}\n")
    refused("notes.txt contains a token of this sandbox")
    (project.root / "notes.txt").unlink()
    (project.root / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    refused("deploy.pem looks like a credential file")
    (project.root / "deploy.pem").unlink()

    # the good change still commits afterwards
    second = service.commit("change train.py")
    assert second.git_sha != head and committed_files(project) == {"train.py"}
    head, runs = second.git_sha, 2
    assert len(project.runs()) == runs

    # nothing changed (outputs re-added unchanged included): NothingToCommit, says so
    for outputs in ([], ["model"]):
        with pytest.raises(NothingToCommit) as raised:
            service.commit("again", outputs=outputs)
        assert raised.value.message.startswith(
            f"Nothing changed since the last commit ({head[:10]})"
        )
        assert raised.value.status == 409
        assert project.head() == head and len(project.runs()) == runs
        assert project.git("status", "--porcelain") == ""


def test_commit_without_a_dvc_remote_says_outputs_are_local(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSDATA_DVC_REMOTE")
    write_project(project.root)
    result = dsdata.commit("no remote", outputs=["model"])
    assert result.run_id and not result.queued
    assert result.note.startswith("No DVC remote is configured")
    assert not project.dvc_remote.exists()
    cache = project.root / ".dvc" / "cache" / "files" / "md5"
    digest = md5(b"weights-1")
    assert (cache / digest[:2] / digest[2:]).is_file()
