"""Nothing is lost while MLflow is down: the commit is kept, the run queued, sent once.

The session's real ``mlflow server`` is stopped and started again on the same port and
store; every run carries ``dsdata.commit_id`` so no retry creates a second run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from server_ext import dsdata
from server_ext.experiments import ExperimentService, TrackingUnavailable

from .mlflow_server import MLflowServer, Project, mlflow_server_fixture, project_fixture  # noqa: F401
from .registries import Registry, dvc_site_cache_fixture, registry_fixture  # noqa: F401


def runs_of(project: Project, commit_id: str) -> list[str]:
    return [r.info.run_id for r in project.runs(f"tags.`dsdata.commit_id` = '{commit_id}'")]


def test_commit_while_mlflow_is_down_is_queued_then_synced_once(
    project: Project, mlflow_server: MLflowServer, registry: Registry
) -> None:
    dsdata.pull("iris@v1")
    (project.root / "train.py").write_text("print(1)\n")
    (project.root / "model").mkdir()
    (project.root / "model" / "w.bin").write_bytes(b"w1")
    first = dsdata.commit("online", outputs=["model"])
    assert first.run_id and not first.queued
    service = ExperimentService()

    mlflow_server.stop()
    try:
        assert not service.reachable()
        (project.root / "train.py").write_text("print(2)\n")
        (project.root / "model" / "w.bin").write_bytes(b"w2")
        started = time.monotonic()
        down = dsdata.commit(
            "offline one", params={"lr": "0.2"}, metrics={"auc": 0.8}, outputs=["model"]
        )
        assert time.monotonic() - started < 30  # no minutes of MLflow client retries
        (project.root / "train.py").write_text("print(3)\n")
        down2 = dsdata.commit("offline two", metrics={"auc": 0.85})

        # git and DVC kept everything; the runs wait in the queue
        for result in (down, down2):
            assert result.queued is True and result.run_id is None and result.url is None
            assert "MLflow is unreachable" in result.note and "queued" in result.note
            assert (project.root / ".dsdata" / "queue" / f"{result.commit_id}.json").is_file()
        assert project.head() == down2.git_sha
        assert project.git("rev-parse", "HEAD~1") == down.git_sha
        assert project.git("status", "--porcelain") == ""
        assert "w2" not in project.git("ls-files")  # outputs went to DVC, not git
        assert len(project.remote_objects()) >= 3
        assert [p["commit_id"] for p in service.queued()] == [down.commit_id, down2.commit_id]

        # log still answers while MLflow is down: the queued runs, newest first
        rows = dsdata.log(10)
        assert [(r["status"], r["message"], r["run_id"]) for r in rows] == [
            ("queued", "offline two", None),
            ("queued", "offline one", None),
        ]
        assert rows[1]["git_sha"] == down.git_sha and rows[1]["metrics"] == {"auc": 0.8}
        assert rows[1]["datasets"]["iris"].startswith("v1.1.0@")
        assert dsdata.sync() == {}  # still down: nothing sent, nothing lost
        assert len(service.queued()) == 2
    finally:
        mlflow_server.start()

    synced_at = time.time() * 1000
    sent = dsdata.sync()
    assert set(sent) == {down.commit_id, down2.commit_id}
    assert service.queued() == []
    for result in (down, down2):
        [run_id] = runs_of(project, result.commit_id)
        assert sent[result.commit_id] == run_id
        run = project.client().get_run(run_id)
        assert run.data.tags["dsdata.git_sha"] == result.git_sha
        assert run.data.tags["mlflow.user"] == "alice"
        assert run.info.start_time < synced_at  # started when committed, not when synced
        assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["iris"]
    assert project.client().get_run(sent[down.commit_id]).data.params == {"lr": "0.2"}
    assert len(project.runs()) == 3

    # sync again, a later commit: no duplicates
    assert dsdata.sync() == {}
    (project.root / "train.py").write_text("print(4)\n")
    later = dsdata.commit("back online")
    assert later.run_id and not later.queued
    assert len(project.runs()) == 4
    for result in (first, down, down2, later):
        assert len(runs_of(project, result.commit_id)) == 1
    assert [r["message"] for r in dsdata.log(10)] == [
        "back online", "offline two", "offline one", "online",
    ]  # fmt: skip


def test_a_queue_file_that_outlives_its_send_makes_no_duplicate(project: Project) -> None:
    (project.root / "train.py").write_text("print(1)\n")
    service = ExperimentService()
    # a crash between "sent to MLflow" and "queue file removed": copy the queue file as it
    # is on disk right after the send, restore it afterwards
    real_send = service._send
    saved: dict[str, str] = {}

    def send_keeping_a_copy(client: Any, payload: dict[str, Any]) -> str:
        run_id = real_send(client, payload)
        for file in service.queue_dir.glob("*.json"):
            saved[file.name] = file.read_text()
        return run_id

    service._send = send_keeping_a_copy  # type: ignore[method-assign]
    result = service.commit("sent once", metrics={"auc": 0.7})
    assert result.run_id and saved and service.queued() == []
    for name, text in saved.items():
        (service.queue_dir / name).write_text(text)
    assert [p["commit_id"] for p in service.queued()] == [result.commit_id]

    assert ExperimentService().sync() == {result.commit_id: result.run_id}
    assert service.queued() == []
    assert runs_of(project, result.commit_id) == [result.run_id]
    assert len(project.runs()) == 1


def test_half_written_queue_files_are_never_read(project: Project) -> None:
    (project.root / "a.py").write_text("x = 1\n")
    service = ExperimentService()
    service.queue_dir.mkdir(parents=True)
    (service.queue_dir / "0123.tmp").write_text('{"commit_id": ')  # a crash mid-write
    result = service.commit("fine")
    assert result.run_id and service.queued() == []
    assert not list(service.queue_dir.glob("*.json"))


def test_no_tracking_server_configured(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (project.root / "a.py").write_text("x = 1\n")
    result = dsdata.commit("no mlflow at all")
    assert result.queued and project.head() == result.git_sha
    queued = json.loads(
        (project.root / ".dsdata" / "queue" / f"{result.commit_id}.json").read_text()
    )
    assert queued["tags"]["dsdata.git_sha"] == result.git_sha
    assert [r["status"] for r in dsdata.log()] == ["queued"]
    shutil.rmtree(project.root / ".dsdata" / "queue")
    with pytest.raises(TrackingUnavailable, match="MLFLOW_TRACKING_URI is not set"):
        dsdata.log()


def test_log_with_mlflow_down_and_nothing_queued_says_so(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .hub import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="is unreachable") as raised:
        dsdata.log()
    assert raised.value.status == 502 and time.monotonic() - started < 10
    with pytest.raises(TrackingUnavailable, match="is unreachable"):
        dsdata.reproduce("0" * 32, str(Path(project.root.parent / "r")))
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable, match="is unreachable") as raised:
        dsdata.models()  # what GET /dsdata/api/models answers: 502 with the reason, not 500
    assert raised.value.status == 502 and time.monotonic() - started < 10


def test_a_registry_that_answers_errors_is_502_with_its_reason(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracking server that answers, but with MLflow errors (a broken store): listing
    models is a 502 naming the reason, never a 500."""
    import http.server
    import threading

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error_code": "INVALID_STATE", "message": "the store is corrupt"}'
            self.send_response(400 if self.path != "/health" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(TrackingUnavailable, match="the store is corrupt") as raised:
            dsdata.models()
        assert raised.value.status == 502
    finally:
        server.shutdown()
