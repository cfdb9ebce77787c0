"""The catalog's connection routes: the lake and the warehouse, used on the platform side.

* ``GET api/connections``: the connections the caller's groups may use (no credential, nor
  the variables that hold one); others are not listed;
* ``GET api/connections/{name}/browse?prefix=P``: objects and sizes one level under ``P``
  (S3), or tables and columns (SQL);
* ``POST api/connections/{name}/imports`` ``{"as", "path"}`` (S3) or ``{"as", "query",
  "params"}`` (SQL): an import into the platform-managed registry, run in its own process
  (:mod:`hub_ext.connections.imports`) with only this connection's secret; progress as JSON
  lines, ending with ``{"done": {"dataset", "version", "created", "lineage"}}`` or
  ``{"error": {"message", "status"}}``;
* ``GET api/imports/{dataset}``: the lineage of each imported version of a dataset.

A connection the caller's groups may not use answers 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from tornado import web

from hub_ext.connections.imports import ImportJob
from hub_ext.connections.registry import ImportRegistry
from hub_ext.connections.settings import Connection
from hub_ext.connections.sources import S3Source, SourceError, SqlSource
from hub_ext.datasets.catalog import may_see
from hub_ext.services.catalog.handlers import CatalogHandler
from server_ext.refs import shown

if TYPE_CHECKING:
    pass

IMPORT_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")  # besides the connection's secret


class ConnectionRoute(CatalogHandler):
    async def connection(self, name: str) -> Connection:
        user = self.require_user()
        conn = self.app.connections.get(name)
        if conn is None:
            raise web.HTTPError(404, f"No connection {shown(name)}")
        if not conn.usable_by(await self.groups_of(user)):
            raise web.HTTPError(403, f"Your groups may not use the connection {shown(name)}")
        return conn


class ConnectionsHandler(ConnectionRoute):
    async def get(self) -> None:
        groups = await self.groups_of(self.require_user())
        usable = [c.public() for c in self.app.connections.values() if c.usable_by(groups)]
        self.write_json({"connections": usable})


class BrowseHandler(ConnectionRoute):
    async def get(self, name: str) -> None:
        conn = await self.connection(name)
        prefix = self.get_argument("prefix", "")

        def browse() -> dict[str, Any]:
            if conn.type == "s3":
                return S3Source(conn).browse(prefix)
            return SqlSource(conn).browse()

        try:
            found = await self.in_thread(browse)
        except SourceError as e:
            raise web.HTTPError(e.status, e.message) from None
        self.write_json({"connection": conn.name, "type": conn.type, **found})


class ImportHandler(ConnectionRoute):
    async def post(self, name: str) -> None:
        conn = await self.connection(name)
        body = self.json_body({"as", "path", "query", "params"}, required={"as"})
        dataset = body["as"]
        if not isinstance(dataset, str) or not ImportRegistry.valid_name(dataset):
            raise web.HTTPError(400, f"{shown(dataset)} is not a dataset name (lower-case "
                                "letters, digits, - and _, starting with a letter)")  # fmt: skip
        params = body.get("params") or {}
        path, query = body.get("path", ""), body.get("query", "")
        if not isinstance(path, str) or not isinstance(query, str) or not isinstance(params, dict):
            raise web.HTTPError(400, "'path' and 'query' must be strings, 'params' an object")
        if conn.type == "s3" and query:
            raise web.HTTPError(400, f"{conn.name!r} is an S3 connection: import a path, not "
                                     "a query")  # fmt: skip
        if conn.type == "sql" and not query.strip():
            raise web.HTTPError(400, f"{conn.name!r} is a SQL connection: give a query")
        taken = self.app.import_sources().get(dataset)
        if taken is None and any(e.name == dataset for e in await self.app.dataset_entries()):
            raise web.HTTPError(409, f"A dataset {shown(dataset)} exists in another registry: "
                                     "import under another name")  # fmt: skip
        if taken is not None and taken != conn.name:
            raise web.HTTPError(409, f"{shown(dataset)} was imported from {taken!r}; import "
                                     f"from {conn.name!r} under another name")  # fmt: skip
        user = self.require_user()
        job = ImportJob(conn, dataset, str(user["name"]), str(self.app.import_registry.root),
                        path=path, query=query, params=params)  # fmt: skip
        await self.stream(job)

    async def stream(self, job: ImportJob) -> None:
        env = {k: os.environ[k] for k in IMPORT_ENV if k in os.environ}
        env.update({k: os.environ.get(k, "") for k in job.connection.secret_env})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub_ext.connections.imports",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            start_new_session=True, limit=1 << 20,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job.to_json()).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        timeout = self.app.data_connections.import_timeout
        last: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                while line := await proc.stdout.readline():
                    last = json.loads(line)
                    self.write(line)
                    await self.flush()
                await proc.wait()
        except TimeoutError:
            last = {"error": {"message": f"The import ran past {timeout} s and was stopped; "
                                         "nothing was imported", "status": 504}}  # fmt: skip
            self.write(json.dumps(last) + "\n")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if "done" not in last and "error" not in last:
            self.write(json.dumps({"error": {"message": "The import stopped before it finished "
                                             f"(exit status {proc.returncode}); nothing was "
                                             "imported", "status": 500}}) + "\n")  # fmt: skip
        if "done" in last:
            self.app.dataset_listing_changed()
        self.finish()


class ImportHistoryHandler(CatalogHandler):
    async def get(self, dataset: str) -> None:
        groups = await self.groups_of(self.require_user())
        history = self.app.import_registry.history(dataset)
        if not history or not may_see(dataset, groups, self.app.dataset_groups):
            raise web.HTTPError(404, f"No imported dataset {shown(dataset)} in your catalog")
        self.write_json({"dataset": dataset, "versions": history})


def routes(url: Any) -> list[tuple[str, type[CatalogHandler]]]:
    name = r"([^/]+)"  # an unknown name is a JSON 404 from the handler
    return [
        (url("api/connections"), ConnectionsHandler),
        (url(f"api/connections/{name}/browse"), BrowseHandler),
        (url(f"api/connections/{name}/imports"), ImportHandler),
        (url(r"api/imports/([^/]+)"), ImportHistoryHandler),
    ]
