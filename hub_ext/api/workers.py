"""``/hub/api/dsplatform/workers``: Dask workers in the hub's ledger (:mod:`hub_ext.dask`).

For the gateway service (``custom:dsplatform:workers``; no user holds it):

* ``GET …/workers/options?user=NAME``: the profiles the user may size workers from, the
  default one, and how the gateway runs their processes (account, workspace, limits).
* ``POST …/workers`` (``{"user", "cluster", "options": {"profile", "cpu", "memory",
  "gpus"}}``): admit one worker: 201 with its grant (devices included), or the spawn's
  refusal: 400 invalid, 403 a profile of other groups or over quota, 503 no free GPU; with
  ``"scheduler": true``, the cluster's scheduler (``c.DaskClusters.scheduler_cpu`` and
  ``scheduler_memory``, in the chosen profile).
* ``POST …/workers/check`` (``{"user", "options", "count"}``): how many more fit now
  (reserves nothing): ``{"fits", "count", "status", "message"}``.
* ``DELETE …/workers/ID``; ``DELETE …/workers?cluster=NAME``: give grants back.
* ``PUT …/workers`` (``{"live": [ID, …]}``): the gateway's live workers; the others' grants
  are given back (a gateway restart).

For users: ``GET …/workers``: the caller's workers; ``?all=1`` everyone's (``read:servers``).
Domain errors become HTTP errors in :func:`_fail` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from hub_ext.admission.options import default_profile, startable_profiles
from hub_ext.admission.policy import Policy, load_policy
from hub_ext.admission.refusals import Refusal
from hub_ext.api.callers import per_user_caller
from hub_ext.dask.grants import WorkerGrants
from hub_ext.dask.settings import WORKERS_SCOPE, DaskClusters, scheduler_size


@contextmanager
def _fail() -> Iterator[None]:
    """The one place where worker admission errors become HTTP answers."""
    try:
        yield
    except Refusal as r:
        raise web.HTTPError(r.status_code, r.message) from None


class _WorkersHandler(APIHandler):
    def policy(self) -> Policy:
        hub = _hub()
        return load_policy(hub.config, hub.spawner_class)

    def gateway(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Authentication required (the gateway's service token)")
        if not self.has_scope(WORKERS_SCOPE):
            raise web.HTTPError(403, f"This token lacks the scope {WORKERS_SCOPE}")

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The request body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The request body must be a JSON object")
        return data

    def user_of(self, name: Any) -> orm.User:
        user = orm.User.find(self.db, name) if isinstance(name, str) and name else None
        if user is None:
            raise web.HTTPError(404, f"No hub user {name!r}")
        return user

    @staticmethod
    def options_of(data: dict[str, Any]) -> dict[str, Any]:
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise web.HTTPError(400, "options: a JSON object (profile, cpu, memory, gpus)")
        return options

    def write_json(self, status: int, data: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(data))


def _hub() -> Any:
    from jupyterhub.app import JupyterHub

    return JupyterHub.instance()


def _groups(user: orm.User) -> list[str]:
    return sorted(g.name for g in user.groups)


class WorkersAPIHandler(_WorkersHandler):
    async def get(self) -> None:
        grants = WorkerGrants(self.db)
        if self.get_argument("all", "") not in ("", "0"):
            if self.current_user is None or not self.has_scope("read:servers"):
                raise web.HTTPError(403, "Only admins may list everyone's workers (read:servers)")
            records = grants.all()
        else:
            records = grants.of_user(per_user_caller(self, "Workers").name)
        self.write_json(200, {"workers": [r.to_json() for r in records]})

    async def post(self) -> None:
        self.gateway()
        data = self.body()
        user = self.user_of(data.get("user"))
        cluster = data.get("cluster")
        if not isinstance(cluster, str) or not cluster.isalnum() or len(cluster) > 64:
            raise web.HTTPError(400, "cluster: the cluster's name (letters and digits)")
        scheduler = None
        if data.get("scheduler") is True:  # the cluster's scheduler: the admin's size
            scheduler = scheduler_size(DaskClusters(config=_hub().config))
        with _fail():
            record = WorkerGrants(self.db).admit(user.name, _groups(user), cluster,
                                                 self.options_of(data), self.policy(),
                                                 scheduler)  # fmt: skip
        self.write_json(201, record.to_json())

    async def put(self) -> None:
        self.gateway()
        live = self.body().get("live", [])
        if not isinstance(live, list) or not all(isinstance(x, str) for x in live):
            raise web.HTTPError(400, "live: the grant ids of the gateway's live workers")
        released = WorkerGrants(self.db).release_where(keep=set(live))
        self.write_json(200, {"released": [r.grant.id for r in released]})

    async def delete(self) -> None:
        self.gateway()
        cluster = self.get_argument("cluster", "")
        if not cluster:
            raise web.HTTPError(400, "?cluster=NAME: whose workers to release")
        released = WorkerGrants(self.db).release_where(cluster=cluster)
        self.write_json(200, {"released": [r.grant.id for r in released]})


class WorkerAPIHandler(_WorkersHandler):
    async def delete(self, grant_id: str) -> None:
        self.gateway()
        if WorkerGrants(self.db).release(grant_id) is None:
            raise web.HTTPError(404, f"No worker grant {grant_id}")
        self.set_status(204)


class WorkersCheckAPIHandler(_WorkersHandler):
    async def post(self) -> None:
        self.gateway()
        data = self.body()
        user = self.user_of(data.get("user"))
        count = data.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
            raise web.HTTPError(400, "count: a whole number of workers, 0 to 1000")
        with _fail():
            fits, refusal = WorkerGrants(self.db).fits(user.name, _groups(user),
                                                       self.options_of(data), count,
                                                       self.policy())  # fmt: skip
        self.write_json(200, {
            "fits": fits, "count": count,
            "status": refusal.status_code if refusal else 200,
            "message": refusal.message if refusal else "",
        })  # fmt: skip


class WorkerOptionsAPIHandler(_WorkersHandler):
    async def get(self) -> None:
        self.gateway()
        user = self.user_of(self.get_argument("user", ""))
        policy = self.policy()
        groups = _groups(user)
        default = default_profile(policy.profiles, groups)
        spawner = _hub().users[user].spawner
        identity: dict[str, Any] = getattr(spawner, "worker_identity", dict)()
        self.write_json(200, {
            "profiles": [p.describe() for p in startable_profiles(policy.profiles, groups)],
            "default": default.slug if default else None,
            "identity": identity,
        })  # fmt: skip
