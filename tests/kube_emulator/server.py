"""The HTTP face of the emulator: the core/v1 REST paths kubernetes_asyncio calls.

``/version``, ``/api``, ``/api/v1``, ``/apis`` for discovery; for pods, PVCs, secrets,
services, config maps and events (namespaced) and nodes and namespaces (cluster-wide):
create, get, list, replace, patch, delete, and ``?watch=1`` with ``resourceVersion``,
``timeoutSeconds``, ``labelSelector`` and ``fieldSelector``; ``pods/NAME/log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from .cluster import ApiError, Cluster
from .store import RESOURCES, SHORT_NAMES, Expired, SelectorError, field_matcher, label_matcher
from .validation import K8S_VERSION, status

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
WATCH_DEFAULT_TIMEOUT = 1800


def _error(e: ApiError) -> web.Response:
    return web.json_response(e.body, status=e.code)


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"{}")
    except ValueError as e:
        raise ApiError(
            status(400, "BadRequest", f"the body of the request is not JSON: {e}")
        ) from None


def make_app(cluster: Cluster) -> web.Application:
    app = web.Application(client_max_size=16 * 1024**2)
    api = Handlers(cluster)
    app.router.add_get("/version", api.version)
    app.router.add_get("/api", api.api_versions)
    app.router.add_get("/api/v1", api.resources)
    app.router.add_get("/apis", api.groups)
    for health in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(health, api.health)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", api.log)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/{plural}/{name}", api.item)
    app.router.add_route("*", "/api/v1/namespaces/{ns}/{plural}", api.collection)
    app.router.add_route("*", "/api/v1/{plural}/{name}", api.item)
    app.router.add_route("*", "/api/v1/{plural}", api.collection)
    return app


class Handlers:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def version(self, request: web.Request) -> web.Response:
        major, minor = K8S_VERSION.split(".")
        return web.json_response(
            {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{K8S_VERSION}.0-dsplatform-emulator",
                "platform": "linux/amd64",
                "goVersion": "",
                "compiler": "emulator",
            }
        )

    async def api_versions(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                ],
            }
        )

    async def groups(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def resources(self, request: web.Request) -> web.Response:
        items = [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": VERBS,
                "shortNames": SHORT_NAMES.get(plural, []),
            }
            for plural, (kind, namespaced) in RESOURCES.items()
        ]
        items.append(
            {
                "name": "pods/log",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            }
        )
        return web.json_response(
            {"kind": "APIResourceList", "groupVersion": "v1", "resources": items}
        )

    # --- collections ----------------------------------------------------------------------
    async def collection(self, request: web.Request) -> web.StreamResponse:
        plural, ns = request.match_info["plural"], request.match_info.get("ns")
        try:
            kind, namespaced = self.cluster._kind(plural)
            if ns is not None and not namespaced:
                raise ApiError(
                    status(404, "NotFound", "the server could not find the requested resource")
                )
            if request.method == "GET":
                query = request.query
                try:
                    labels = label_matcher(query.get("labelSelector", ""))
                    fields = field_matcher(plural, query.get("fieldSelector", ""))
                except SelectorError as e:
                    raise ApiError(status(400, "BadRequest", str(e))) from None

                def match(obj: dict[str, Any]) -> bool:
                    return labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj)

                if query.get("watch", "").lower() in ("true", "1"):
                    return await self.watch(request, plural, ns, match)
                items = sorted(
                    (o for o in self.cluster.store.items(plural, ns) if match(o)),
                    key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
                )
                return web.json_response(
                    {
                        "kind": f"{kind}List",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self.cluster.store.rv)},
                        "items": [_strip(o) for o in items],
                    }
                )
            if request.method == "POST":
                if namespaced and ns is None:
                    raise ApiError(
                        status(
                            405,
                            "MethodNotAllowed",
                            f"create {plural} in a namespace: /api/v1/namespaces/NS/{plural}",
                        )
                    )
                created = self.cluster.create(plural, ns or "", await _body(request))
                return web.json_response(created, status=201)
            raise ApiError(
                status(
                    405, "MethodNotAllowed", f"the server does not allow this method on {plural}"
                )
            )
        except ApiError as e:
            return _error(e)

    async def watch(
        self, request: web.Request, plural: str, ns: str | None, match: Any
    ) -> web.StreamResponse:
        store = self.cluster.store
        try:
            timeout = float(request.query.get("timeoutSeconds") or WATCH_DEFAULT_TIMEOUT)
        except ValueError:
            return _error(ApiError(status(400, "BadRequest", "timeoutSeconds must be a number")))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            watcher, first = store.watch(plural, ns, match, request.query.get("resourceVersion"))
        except Expired as e:
            await response.prepare(request)
            gone = status(410, "Expired", str(e))
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await response.prepare(request)
            for event in first:
                await response.write(json.dumps(event).encode() + b"\n")
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), left)
                except TimeoutError:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watcher)
        return response

    # --- single objects -------------------------------------------------------------------
    async def item(self, request: web.Request) -> web.Response:
        plural, name = request.match_info["plural"], request.match_info["name"]
        ns = request.match_info.get("ns", "")
        try:
            _, namespaced = self.cluster._kind(plural)
            if namespaced != bool(ns):
                raise ApiError(
                    status(404, "NotFound", "the server could not find the requested resource")
                )
            if request.method == "GET":
                return web.json_response(self.cluster.get(plural, ns, name))
            if request.method == "PUT":
                return web.json_response(
                    self.cluster.replace(plural, ns, name, await _body(request))
                )
            if request.method == "PATCH":
                patch_type = request.headers.get("Content-Type", "application/json")
                return web.json_response(
                    self.cluster.replace(plural, ns, name, await _body(request), patch_type)
                )
            if request.method == "DELETE":
                grace = request.query.get("gracePeriodSeconds")
                body = await _body(request)
                if grace is None and isinstance(body, dict):
                    grace = body.get("gracePeriodSeconds")
                return web.json_response(
                    self.cluster.delete(plural, ns, name, None if grace is None else int(grace))
                )
            raise ApiError(
                status(
                    405, "MethodNotAllowed", f"the server does not allow this method on {plural}"
                )
            )
        except ApiError as e:
            return _error(e)

    async def log(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        try:
            pod = self.cluster.get("pods", ns, name)
        except ApiError as e:
            return _error(e)
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = request.query.get("container") or (names[0] if len(names) == 1 else "")
        if not container:
            return _error(
                ApiError(
                    status(
                        400,
                        "BadRequest",
                        f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
                    )
                )
            )
        path = (
            self.cluster.config.state_dir
            / "pods"
            / ns
            / f"{name}-{pod['metadata']['uid'][:8]}"
            / "logs"
            / f"{container}.log"
        )
        text = path.read_text(errors="replace") if path.exists() else ""
        tail = request.query.get("tailLines")
        if tail:
            text = "".join(text.splitlines(keepends=True)[-int(tail) :])
        return web.Response(text=text)


async def start_server(cluster: Cluster, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``cluster`` on host:port (0 = a free port); the runner and the bound port."""
    runner = web.AppRunner(make_app(cluster), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    cluster.start()
    return runner, bound
