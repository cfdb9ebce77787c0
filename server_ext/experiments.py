"""Experiments: ``%dsdata commit`` ties code (git), data (DVC + lineage), params, metrics and
environment into one MLflow run; ``log`` lists runs; ``reproduce`` recreates one.

Commit order makes loss impossible: outputs are ``dvc add``-ed and pushed, the git commit is
made, the run is written to ``.dsdata/queue/`` and only then sent to MLflow. If MLflow is
unreachable the queued run waits for the next commit or ``%dsdata sync``; every run carries
``dsdata.commit_id`` so a retry never creates a second run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .core import DataService
from .environment import environment_spec
from .errors import DsdataError, InvalidReference
from .lineage import Lineage, find_project_root
from .model_logging import (
    MODEL_DIGEST_TAG,
    MODEL_PATH_TAG,
    content_digest,
    log_model,
    model_source,
    quiet_mlflow,
)
from .params import check_key, check_values, load_file, to_metrics
from .project import Project, git


class NothingToCommit(DsdataError):
    status = 409


class TrackingUnavailable(DsdataError):
    status = 502


class UnknownRun(DsdataError):
    status = 404


@dataclass
class CommitResult:
    commit_id: str
    git_sha: str
    experiment: str
    run_id: str | None
    queued: bool
    message: str
    outputs: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_queued(path: Path, payload: Mapping[str, Any]) -> None:
    """Write a queued run atomically: a crash never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


# --- the service ---------------------------------------------------------------------------
class ExperimentService:
    """Commit, log, sync and reproduce experiments of one project."""

    def __init__(
        self,
        root: Path | None = None,
        tracking_uri: str | None = None,
        dvc_remote: str | None = None,
        user: str | None = None,
    ) -> None:
        self.root = (root or find_project_root()).resolve()
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
        # where a browser opens the UI: the hub's login-protected route when the hub says so
        self.ui_base = os.environ.get("DSDATA_MLFLOW_UI_URL") or None
        self.dvc_remote = dvc_remote or os.environ.get("DSDATA_DVC_REMOTE") or None
        self.user = user or os.environ.get("JUPYTERHUB_USER") or os.environ.get("USER") or "user"
        self.project = Project(self.root)
        self.queue_dir = self.root / ".dsdata" / "queue"
        self._experiment_ids: dict[str, str] = {}

    @property
    def experiment_name(self) -> str:
        return f"dsdata/{self.user}/{self.root.name}"

    def client(self) -> Any:
        if not self.tracking_uri:
            raise TrackingUnavailable("MLFLOW_TRACKING_URI is not set: no MLflow server to use")
        if not self.reachable():
            raise TrackingUnavailable(f"MLflow at {self.tracking_uri} is unreachable")
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def reachable(self, timeout: float = 3.0) -> bool:
        """Whether the tracking server answers at all: one quick probe, no retries.

        MLflow's client retries a refused connection with backoff for minutes; without
        this probe a commit (or log) while MLflow is down would hang the kernel that long.
        """
        if not self.tracking_uri.startswith(("http://", "https://")):
            return True
        try:
            url = f"{self.tracking_uri.rstrip('/')}/health"
            with urllib.request.urlopen(url, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            return True  # it answered (auth, proxy): the client will say what is wrong
        except (OSError, ValueError):
            return False
        return True

    # commit -------------------------------------------------------------------------------
    def commit(
        self,
        message: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, Any] | None = None,
        params_file: str | None = None,
        metrics_file: str | None = None,
        outputs: Sequence[str] = (),
        model: str | None = None,
    ) -> CommitResult:
        """Record code, data, params, metrics and environment as one run; ``model`` (an
        MLflow model directory or a pickled estimator) is tracked with DVC and logged as the
        run's ``model``, so ``publish --run`` and ``publish --path`` register it from here.

        Raises:
            InvalidReference: bad pairs, files or outputs; secrets found (nothing committed).
            NothingToCommit: no change since the last commit.
        """
        if not message or not message.strip():
            raise InvalidReference("A commit message is required: %dsdata commit -m 'what changed'")
        all_params: dict[str, str] = {}
        if params_file:
            all_params.update(
                {k: str(v) for k, v in load_file(self.root, params_file, "params").items()}
            )
        all_params.update(params or {})
        for key in all_params:
            check_key(key, "param")
        check_values(all_params)
        all_metrics: dict[str, float] = {}
        if metrics_file:
            all_metrics.update(to_metrics(load_file(self.root, metrics_file, "metrics")))
        all_metrics.update(to_metrics(metrics or {}))

        recorded_model: dict[str, str] | None = None
        if model:
            source = model_source(self.root, model)
            rel = source.relative_to(self.root.resolve()).as_posix()
            recorded_model = {"path": rel, "digest": content_digest(source)}
            outputs = [*outputs, rel]
        self.project.ensure(self.dvc_remote)
        outputs = list(dict.fromkeys(self.project.resolve_outputs(outputs)))
        self.project.check_pending(outputs)  # refuse before dvc add changes anything
        outs = self.project.dvc_add(outputs)
        note = ""
        if outs:
            if self.dvc_remote or self._has_remote():
                self.project.dvc_push(list(outs))
            else:
                note = "No DVC remote is configured: outputs are in the local DVC cache only. "
        env_file = self.root / ".dsdata" / "environment.json"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text(json.dumps(environment_spec(), indent=2) + "\n")
        staged = self.project.stage_all()
        if not staged or (staged == [".dsdata/environment.json"] and self.project.head()):
            git(self.root, "reset", "-q", check=False)
            head = self.project.head()
            raise NothingToCommit(
                f"Nothing changed since the last commit{f' ({head[:10]})' if head else ''}: "
                "edit code, params or outputs first"
            )
        commit_id = uuid.uuid4().hex
        sha = self.project.commit(f"{message.strip()}\n\nDsdata-Commit: {commit_id}")
        tags = self._tags(sha, commit_id, message.strip())
        if recorded_model:  # so a later publish --path finds this run
            tags[MODEL_PATH_TAG] = recorded_model["path"]
            tags[MODEL_DIGEST_TAG] = recorded_model["digest"]
        payload = {
            "commit_id": commit_id,
            "experiment": self.experiment_name,
            "message": message.strip(),
            "params": all_params,
            "metrics": all_metrics,
            "tags": tags,
            "inputs": self._inputs(),
            "model": recorded_model,  # logged into the run when it is sent
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "started_ms": time.time_ns() // 1_000_000,  # the run's start time, and queue order
        }
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        queued = self.queue_dir / f"{commit_id}.json"
        write_queued(queued, payload)
        result = CommitResult(
            commit_id, sha, self.experiment_name, None, True, message.strip(), outs
        )
        sent = self.sync()
        if commit_id in sent:
            result.run_id, result.queued = sent[commit_id], False
            result.url = self.run_url(
                sent[commit_id], self._experiment_ids.get(self.experiment_name)
            )
        else:
            note += (
                "MLflow is unreachable: the git/DVC commit is kept and the run is queued; "
                "it is sent by the next %dsdata commit or %dsdata sync."
            )
        result.note = note.strip()
        return result

    def _has_remote(self) -> bool:
        config = self.root / ".dvc" / "config"
        return config.exists() and "remote" in config.read_text()

    def _tags(self, sha: str, commit_id: str, message: str) -> dict[str, str]:
        tags = {
            "dsdata.git_sha": sha,
            "dsdata.commit_id": commit_id,
            "dsdata.profile": os.environ.get("DSPLATFORM_PROFILE", "none"),
            "dsdata.project": str(self.root),
            "mlflow.user": self.user,
            "mlflow.source.git.commit": sha,
            "mlflow.runName": message[:200],
            "mlflow.note.content": message,
        }
        for record in Lineage(self.root).current().values():
            tags[f"dsdata.dataset.{record['dataset']}"] = f"{record['version']}@{record['rev']}"
        return tags

    def _inputs(self) -> list[dict[str, str]]:
        return [
            {
                "name": record["dataset"],
                "digest": record["content_hash"][:36],
                "source_type": "dvc",
                "source": json.dumps(
                    {
                        "registry": record["registry"],
                        "tag": record["tag"],
                        "rev": record["rev"],
                        "path": record["path"],
                    }
                ),
                "version": record["version"],
            }
            for record in Lineage(self.root).current().values()
        ]

    # sync ---------------------------------------------------------------------------------
    def queued(self) -> list[dict[str, Any]]:
        """Runs waiting to be sent, oldest commit first."""
        if not self.queue_dir.is_dir():
            return []
        payloads = [json.loads(p.read_text()) for p in self.queue_dir.glob("*.json")]
        return sorted(payloads, key=lambda p: (p.get("started_ms", 0), p["time"]))

    def sync(self) -> dict[str, str]:
        """Send queued runs; return commit_id -> run_id of those now in MLflow."""
        sent: dict[str, str] = {}
        pending = self.queued()
        if not pending or not self.tracking_uri:
            return sent
        try:
            client = self.client()
            for payload in pending:
                sent[payload["commit_id"]] = self._send(client, payload)
                (self.queue_dir / f"{payload['commit_id']}.json").unlink(missing_ok=True)
        except Exception as e:  # MLflow down: what was not sent stays queued
            if isinstance(e, DsdataError) and not isinstance(e, TrackingUnavailable):
                raise
        return sent

    def _experiment_id(self, client: Any, name: str) -> str:
        if name not in self._experiment_ids:
            experiment = client.get_experiment_by_name(name)
            self._experiment_ids[name] = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(name)
            )
        return self._experiment_ids[name]

    def _send(self, client: Any, payload: dict[str, Any]) -> str:
        from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

        experiment_id = self._experiment_id(client, payload["experiment"])
        queue_file = self.queue_dir / f"{payload['commit_id']}.json"
        if payload.get("attempts", 0):
            # an earlier attempt may have reached MLflow before it failed: find, not resend
            existing = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`dsdata.commit_id` = '{payload['commit_id']}'",
            )
            if existing:
                return str(existing[0].info.run_id)
        payload["attempts"] = payload.get("attempts", 0) + 1
        write_queued(queue_file, payload)  # before anything is sent
        run = client.create_run(
            experiment_id,
            start_time=payload.get("started_ms"),  # when committed, not when synced
            tags=payload["tags"],
            run_name=payload["tags"]["mlflow.runName"],
        )
        run_id = run.info.run_id
        now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in payload["metrics"].items()],
            params=[Param(k, v[:6000]) for k, v in payload["params"].items()],
        )
        if payload["inputs"]:
            client.log_inputs(
                run_id,
                datasets=[
                    DatasetInput(
                        Dataset(i["name"], i["digest"], i["source_type"], i["source"]),
                        tags=[
                            InputTag("mlflow.data.context", "training"),
                            InputTag("dsdata.version", i["version"]),
                        ],
                    )
                    for i in payload["inputs"]
                ],
            )
        env_file = self.root / ".dsdata" / "environment.json"
        if env_file.exists():
            client.log_artifact(run_id, os.fspath(env_file))
        model = payload.get("model")
        if model:
            source = self.root / model["path"]
            if source.exists() and content_digest(source) == model["digest"]:
                log_model(self.tracking_uri, run_id, source)
            else:  # changed since the commit (a queued run sent later): DVC has the original
                client.set_tag(run_id, "dsdata.model_changed_before_sync", model["path"])
        with quiet_mlflow():  # MLflow prints its raw server URL here
            client.set_terminated(run_id)
        return str(run_id)

    @property
    def ui_url(self) -> str | None:
        """The MLflow UI for a browser: ``DSDATA_MLFLOW_UI_URL`` (the hub's route to it), else
        the tracking server when it is HTTP(S)."""
        if self.ui_base:
            return self.ui_base.rstrip("/") + "/"  # a path prefix: relative links need the /
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return self.tracking_uri.rstrip("/")

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str | None:
        if self.ui_url is None:
            return None
        if experiment_id is None:
            try:
                experiment_id = self.client().get_run(run_id).info.experiment_id
            except Exception:
                return None
        return self.ui_run_url(str(experiment_id), run_id)

    def ui_run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{(self.ui_url or '').rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    # log ----------------------------------------------------------------------------------
    def log(self, n: int = 10) -> list[dict[str, Any]]:
        """Recent runs of this project, newest first; queued runs first of all."""
        if n < 1:
            raise InvalidReference("-n must be at least 1")
        rows = [
            {
                "run_id": None,
                "status": "queued",
                "message": p["message"],
                "metrics": p["metrics"],
                "git_sha": p["tags"]["dsdata.git_sha"],
                "datasets": _datasets(p["tags"]),
                "time": p["time"],
                "url": None,
            }
            for p in reversed(self.queued())
        ]
        try:
            client = self.client()
        except TrackingUnavailable:
            if rows:  # MLflow down: still show what waits in the queue
                return rows[:n]
            raise
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=n
            )
            for run in runs:
                tags = run.data.tags
                rows.append(
                    {
                        "run_id": run.info.run_id,
                        "status": run.info.status.lower(),
                        "message": tags.get("mlflow.note.content", run.info.run_name),
                        "metrics": dict(run.data.metrics),
                        "git_sha": tags.get("dsdata.git_sha"),
                        "datasets": _datasets(tags),
                        "time": dt.datetime.fromtimestamp(
                            run.info.start_time / 1000, dt.UTC
                        ).isoformat(timespec="seconds"),
                        "url": self.run_url(run.info.run_id, experiment.experiment_id),
                    }
                )
        return rows[:n]

    # reproduce ----------------------------------------------------------------------------
    def reproduce(self, run_id: str, directory: str | None = None) -> dict[str, Any]:
        """Check out the run's code, pull its exact data versions and outputs, write its env.

        Returns the directory and, per dataset and output, whether the content hash is
        identical to the original run's.
        """
        if not re.fullmatch(r"[0-9a-f]{32}", run_id or ""):
            raise InvalidReference(f"Invalid run id {run_id!r}: expected 32 hex characters")
        try:
            run = self.client().get_run(run_id)
        except DsdataError:
            raise
        except Exception as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
                raise UnknownRun(f"No MLflow run {run_id}") from None
            raise TrackingUnavailable(f"Cannot read run {run_id} from MLflow: {e}") from None
        tags = run.data.tags
        sha = tags.get("dsdata.git_sha")
        project = tags.get("dsdata.project") or str(self.root)
        if not sha:
            raise UnknownRun(f"Run {run_id} was not made by %dsdata commit (no dsdata.git_sha)")
        target = Path(directory) if directory else self.root / "reproduce" / run_id[:12]
        if not target.is_absolute():
            target = self.root / target
        if target.exists() and any(target.iterdir()):
            raise InvalidReference(f"{target} exists and is not empty; choose another -o DIR")
        target.parent.mkdir(parents=True, exist_ok=True)
        git(target.parent, "clone", "-q", "--no-checkout", project, os.fspath(target))
        try:
            git(target, "checkout", "-q", sha)
        except DsdataError:
            shutil.rmtree(target, ignore_errors=True)
            raise UnknownRun(f"Commit {sha} of run {run_id} is not in {project}") from None
        datasets = []
        data = DataService(root=target)
        for rel, record in sorted(Lineage(target).current().items()):
            pulled = data.pull(f"{record['dataset']}@{record['version']}", rel, force=True)
            datasets.append(
                {
                    "dataset": record["dataset"],
                    "version": record["version"],
                    "path": rel,
                    "content_hash": pulled.content_hash,
                    "identical": pulled.content_hash == record["content_hash"],
                }
            )
        outputs = self._pull_outputs(target)
        return {
            "run_id": run_id,
            "directory": str(target),
            "git_sha": sha,
            "datasets": datasets,
            "outputs": outputs,
            "identical": all(d["identical"] for d in datasets)
            and all(o["identical"] for o in outputs),
        }

    def _pull_outputs(self, target: Path) -> list[dict[str, Any]]:
        from dvc.repo import Repo

        from .project import quiet_dvc

        if not (target / ".dvc").exists():
            return []
        results = []
        with quiet_dvc():
            repo = Repo(os.fspath(target))
            try:
                stages = [s for s in repo.index.stages if s.is_data_source]
                if stages:
                    repo.pull(targets=[s.relpath for s in stages])
                for stage in stages:
                    for out in stage.outs:
                        recorded = out.hash_info.value
                        actual = out.get_hash().value if out.exists else None
                        results.append(
                            {
                                "path": out.def_path,
                                "content_hash": recorded,
                                "identical": recorded == actual,
                            }
                        )
            finally:
                repo.close()
        return results


def _datasets(tags: Mapping[str, str]) -> dict[str, str]:
    prefix = "dsdata.dataset."
    return {k[len(prefix) :]: v for k, v in tags.items() if k.startswith(prefix)}
