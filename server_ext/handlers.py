"""REST handlers under ``/dsdata/api/`` (see ``api/openapi.yaml``); every route authenticated.

One base handler maps :class:`~server_ext.errors.DsdataError` to a JSON ``{"message"}``
with its 4xx/5xx status; the handlers only translate HTTP to core calls.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from .core import DataService
from .errors import BodyTooLarge, DsdataError, InvalidReference
from .experiments import ExperimentService
from .jobs import PullJobs
from .models import ModelService
from .refs import default_target, parse_ref, resolve_target, shown

MAX_JSON_BODY = 1 << 20  # requests of this API are small; the server's own limit is larger
MAX_RUNS = 1000  # experiments?n=


class DsdataHandler(ExtensionHandlerMixin, APIHandler):
    @property
    def service(self) -> DataService:
        service: DataService = self.settings["dsdata_service"]
        return service

    @property
    def experiments(self) -> ExperimentService:
        experiments: ExperimentService = self.settings["dsdata_experiments"]
        return experiments

    @property
    def models(self) -> ModelService:
        return ModelService(self.experiments)

    @property
    def jobs(self) -> PullJobs:
        jobs: PullJobs = self.settings["dsdata_jobs"]
        return jobs

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DsdataError):
            self.set_status(exc.status)
            message = exc.message
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message}))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    async def in_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)


class DatasetsHandler(DsdataHandler):
    @web.authenticated
    async def get(self) -> None:
        entries = await self.in_thread(self.service.list_datasets)
        self.write_json({"datasets": [entry.to_json() for entry in entries]})


class DatasetHandler(DsdataHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        info = await self.in_thread(self.service.info, name)
        self.write_json(info.to_json())


class PullsHandler(DsdataHandler):
    @web.authenticated
    async def post(self) -> None:
        body = json_body(self, {"dataset", "version", "path", "force"})
        dataset, version, path = body.get("dataset"), body.get("version"), body.get("path")
        force = body.get("force", False)
        if not isinstance(dataset, str) or not isinstance(force, bool):
            raise InvalidReference("'dataset' must be a string and 'force' a boolean")
        if version is not None and not isinstance(version, str):
            raise InvalidReference("'version' must be a string like 'v2'")
        if path is not None and not isinstance(path, str):
            raise InvalidReference("'path' must be a string")
        ref = parse_ref(dataset, version)  # 400 now, not in the job
        resolve_target(self.service.root, path, default_target(ref.name, "", False))
        job = self.jobs.start(dataset, version, path, force)
        self.set_header("Location", self.request.path.rstrip("/") + f"/{job.id}")
        self.write_json({"id": job.id}, status=202)


class PullHandler(DsdataHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            raise web.HTTPError(404, f"No pull {job_id}")
        self.write_json(job.as_dict())


class PullEventsHandler(DsdataHandler):
    """Server-Sent Events: one ``data:`` line per progress change until the pull ends."""

    @web.authenticated
    async def get(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            raise web.HTTPError(404, f"No pull {job_id}")
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        seen = -1
        while True:
            await job.next_change(seen)  # woken by the pull itself, no polling
            seen, state = job.snapshot()
            self.write(f"data: {json.dumps(state)}\n\n")
            await self.flush()
            if state["status"] != "running":
                break
        self.finish()


class LineageHandler(DsdataHandler):
    @web.authenticated
    async def get(self) -> None:
        status = await self.in_thread(self.service.status)
        self.write_json({"pulls": self.service.lineage.records(), "status": status})


def json_body(handler: DsdataHandler, allowed: set[str]) -> dict[str, Any]:
    raw = handler.request.body or b"{}"
    if len(raw) > MAX_JSON_BODY:
        raise BodyTooLarge(f"A body of {len(raw)} bytes; this API takes at most {MAX_JSON_BODY}")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else "not valid JSON"
        raise InvalidReference(f"The request body must be JSON ({why})") from None
    if not isinstance(body, dict):
        raise InvalidReference("The request body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidReference(
            f"Unknown field {shown(sorted(unknown)[0])}; allowed: {', '.join(sorted(allowed))}"
        )
    return body


def typed(
    body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None
) -> Any:
    value = body.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise InvalidReference(f"Field {key!r} has the wrong type")
    return value


class ExperimentsHandler(DsdataHandler):
    @web.authenticated
    async def get(self) -> None:
        text = self.get_argument("n", "10")
        if not (text.isascii() and text.isdigit() and len(text) <= 4) or not (
            1 <= int(text) <= MAX_RUNS
        ):
            raise InvalidReference(f"n must be a number from 1 to {MAX_RUNS}, not {shown(text)}")
        n = int(text)
        runs = await self.in_thread(self.experiments.log, n)
        self.write_json(
            {
                "runs": runs,
                "experiment": self.experiments.experiment_name,
                "mlflow_url": self.experiments.ui_url,
            }
        )

    @web.authenticated
    async def post(self) -> None:
        body = json_body(
            self,
            {"message", "params", "metrics", "params_file", "metrics_file", "outputs", "model"},
        )
        params = typed(body, "params", dict, {})
        metrics = typed(body, "metrics", dict, {})
        outputs = typed(body, "outputs", list, [])
        if not all(isinstance(o, str) for o in outputs):
            raise InvalidReference("'outputs' must be a list of paths")
        result = await self.in_thread(
            lambda: self.experiments.commit(
                typed(body, "message", str, ""),
                params={str(k): str(v) for k, v in params.items()},
                metrics=metrics,
                params_file=typed(body, "params_file", str),
                metrics_file=typed(body, "metrics_file", str),
                outputs=outputs,
                model=typed(body, "model", str),
            )
        )
        self.write_json(result.as_dict(), status=201)


class ModelsHandler(DsdataHandler):
    @web.authenticated
    async def get(self) -> None:
        self.write_json({"models": await self.in_thread(self.models.list_models)})

    @web.authenticated
    async def post(self) -> None:
        body = json_body(self, {"model", "path", "run_id", "alias"})
        result = await self.in_thread(
            lambda: self.models.publish(
                typed(body, "model", str, ""),
                path=typed(body, "path", str),
                run_id=typed(body, "run_id", str),
                alias=typed(body, "alias", str),
            )
        )
        self.write_json(result, status=201)


class PromotionsHandler(DsdataHandler):
    """``POST models/{name}/promotions``: ask the catalog for a reviewed promotion."""

    @web.authenticated
    async def post(self, name: str) -> None:
        body = json_body(self, {"version", "alias", "note"})
        version, alias = body.get("version"), body.get("alias")
        if isinstance(version, bool) or not isinstance(version, int | str):
            raise InvalidReference("'version' must be a version number like 2")
        if not isinstance(alias, str):
            raise InvalidReference("'alias' must be a string like 'production'")
        note = typed(body, "note", str, "")
        result = await self.in_thread(lambda: self.models.promote(name, version, alias, note))
        self.write_json(result, status=201)


class ModelHistoryHandler(DsdataHandler):
    """``GET models/{name}/history``: the catalog's promotion history of a model."""

    @web.authenticated
    async def get(self, name: str) -> None:
        self.write_json(await self.in_thread(self.models.history, name))


class ConnectionsHandler(DsdataHandler):
    """``GET connections``: the connections the user's groups may use (through the catalog)."""

    @web.authenticated
    async def get(self) -> None:
        from . import connections
        from .catalog_client import catalog_api
        from .errors import RegistryUnavailable

        try:
            catalog_api()
        except RegistryUnavailable:  # no platform around this server: nothing to connect to
            self.write_json({"connections": [], "note": "No connections: this server has no "
                             "platform catalog service (DSDATA_CATALOG_URL)"})  # fmt: skip
            return
        self.write_json({"connections": await self.in_thread(connections.connections)})


class BrowseHandler(DsdataHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        from . import connections

        prefix = self.get_argument("prefix", "")
        self.write_json(await self.in_thread(connections.browse, name, prefix))


class ImportsHandler(DsdataHandler):
    """``POST connections/{name}/imports`` ``{"as", "path"}`` or ``{"as", "query",
    "params"}``: the import's result once it is done."""

    @web.authenticated
    async def post(self, name: str) -> None:
        from . import connections

        body = json_body(self, {"as", "path", "query", "params"})
        as_name = typed(body, "as", str, "")
        path, query = typed(body, "path", str), typed(body, "query", str)
        params = typed(body, "params", dict, {})
        if not as_name:
            raise InvalidReference("Missing field 'as': the dataset the import becomes")
        source = f"{name}:{path}" if path is not None else name
        result = await self.in_thread(lambda: connections.import_data(
            source, as_name=as_name, query=query, params=params))  # fmt: skip
        self.write_json(result.as_dict(), status=201 if result.created else 200)


JOB_FIELDS = {"notebook", "profile", "cpu", "memory", "gpus", "parameters", "wait", "commit",
              "timeout"}  # fmt: skip


class NotebookJobsHandler(DsdataHandler):
    """``GET jobs``: the user's notebook jobs; ``POST jobs`` submits one (through the hub;
    its refusal, with the numbers, is the hub's)."""

    @web.authenticated
    async def get(self) -> None:
        from . import notebook_jobs

        jobs = await self.in_thread(notebook_jobs.jobs)
        self.write_json({"jobs": [j.as_dict() for j in jobs]})

    @web.authenticated
    async def post(self) -> None:
        from . import notebook_jobs

        body = json_body(self, JOB_FIELDS)
        notebook = typed(body, "notebook", str, "")
        if not notebook:
            raise InvalidReference("Missing field 'notebook': a notebook in your workspace")
        workspace = notebook_jobs.workspace()
        job = await self.in_thread(lambda: notebook_jobs.submit(
            str(workspace / notebook), profile=typed(body, "profile", str),
            cpu=typed(body, "cpu", (int, float)), memory=typed(body, "memory", str),
            gpus=typed(body, "gpus", int), parameters=typed(body, "parameters", dict, {}),
            wait=bool(typed(body, "wait", bool, False)),
            commit=bool(typed(body, "commit", bool, False)), timeout=typed(body, "timeout", int),
        ))  # fmt: skip
        self.write_json(job.as_dict(), status=202 if job.state == "queued" else 201)


class NotebookJobHandler(DsdataHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        from . import notebook_jobs

        self.write_json((await self.in_thread(notebook_jobs.job, job_id)).as_dict())

    @web.authenticated
    async def delete(self, job_id: str) -> None:
        from . import notebook_jobs

        self.write_json((await self.in_thread(notebook_jobs.cancel, job_id)).as_dict())


class NotebookJobLogHandler(DsdataHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        from . import notebook_jobs

        tail = self.get_argument("tail", "")
        if tail and not tail.isdigit():
            raise InvalidReference("tail: a number of lines")
        text = await self.in_thread(notebook_jobs.logs, job_id, int(tail) if tail else None)
        self.write_json({"id": job_id, "log": text})


def route_table(base: str = "/dsdata/api") -> list[tuple[str, type[DsdataHandler]]]:
    return [
        (rf"{base}/datasets", DatasetsHandler),
        (rf"{base}/datasets/(?P<name>[^/]+)", DatasetHandler),
        (rf"{base}/pulls", PullsHandler),
        (rf"{base}/pulls/(?P<job_id>[0-9a-f]+)", PullHandler),
        (rf"{base}/pulls/(?P<job_id>[0-9a-f]+)/events", PullEventsHandler),
        (rf"{base}/lineage", LineageHandler),
        (rf"{base}/experiments", ExperimentsHandler),
        (rf"{base}/models", ModelsHandler),
        (rf"{base}/models/(?P<name>[^/]+)/promotions", PromotionsHandler),
        (rf"{base}/models/(?P<name>[^/]+)/history", ModelHistoryHandler),
        (rf"{base}/connections", ConnectionsHandler),
        (rf"{base}/connections/(?P<name>[^/]+)/browse", BrowseHandler),
        (rf"{base}/connections/(?P<name>[^/]+)/imports", ImportsHandler),
        (rf"{base}/jobs", NotebookJobsHandler),
        (rf"{base}/jobs/(?P<job_id>[0-9a-f]+)", NotebookJobHandler),
        (rf"{base}/jobs/(?P<job_id>[0-9a-f]+)/log", NotebookJobLogHandler),
    ]
