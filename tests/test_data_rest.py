"""``/dsdata/api/`` through a real jupyter-server with the extension enabled (pytest-jupyter).

The async tests are run by pytest-jupyter's own hook on its event loop (they are not
marked for pytest-asyncio, which runs in strict mode and so leaves them alone).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.utils import url_path_join

from server_ext.handlers import route_table

from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)
from .rest import API, body, dsdata_server_config, error_of

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The extension on, reading our registry; set before the server starts."""
    return dsdata_server_config(monkeypatch, registry.url, tmp_path / "cache")


async def start_pull(fetch: Any, **request: Any) -> str:
    response = await fetch(*API, "pulls", method="POST", body=json.dumps(request))
    assert response.code == 202
    job_id = body(response)["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert response.headers["Location"].endswith(f"/dsdata/api/pulls/{job_id}")
    return str(job_id)


async def wait_for(fetch: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = body(await fetch(*API, "pulls", job_id))
        if job["status"] != "running":
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"pull {job_id} still running after {timeout}s")


async def test_list_datasets(jp_fetch: Any, registry: Registry) -> None:
    response = await jp_fetch(*API, "datasets")
    assert response.code == 200
    datasets = body(response)["datasets"]
    assert [d["name"] for d in datasets] == ["iris", "multi"]
    iris = datasets[0]
    assert iris["versions"] == ["v1.0.0", "v1.1.0", "v2.0.0"] and iris["latest"] == "v2.0.0"
    assert iris["registry"] == registry.url
    assert iris["description"] == "Iris flowers, renamed columns"


async def test_one_dataset(jp_fetch: Any, registry: Registry) -> None:
    info = body(await jp_fetch(*API, "datasets", "iris"))
    assert info["name"] == "iris"
    details = {d["version"]: d for d in info["version_details"]}
    assert list(details) == ["v2.0.0", "v1.1.0", "v1.0.0"]
    for version, detail in details.items():
        rel = release("iris", version)
        assert detail["rev"] == registry.rev(rel.tag)
        assert (detail["size"], detail["nfiles"]) == (rel.size, len(rel.files))
        assert detail["cached"] is False

    code, error = await error_of(jp_fetch, "datasets", "penguins")
    assert code == 404 and "available: iris, multi" in error["message"]
    code, error = await error_of(jp_fetch, "datasets", "Bad!Name")
    assert code == 400 and "Invalid dataset name" in error["message"]


async def test_pull_then_poll_until_done(jp_fetch: Any, jp_root_dir: Path) -> None:
    job_id = await start_pull(jp_fetch, dataset="iris", version="v1")
    job = await wait_for(jp_fetch, job_id)
    assert job["status"] == "done", job
    assert job["error"] is None
    assert job["request"] == {"dataset": "iris", "version": "v1", "path": None, "force": False}
    result = job["result"]
    assert (result["dataset"], result["version"], result["path"]) == ("iris", "v1.1.0", "data/iris")
    assert job["progress"]["phase"] == "done"
    assert md5_tree(jp_root_dir / "data" / "iris") == expected_tree(release("iris", "v1.1.0"))

    # the same version again, elsewhere: from the cache
    job = await wait_for(jp_fetch, await start_pull(jp_fetch, dataset="iris@v1", path="x/y"))
    assert job["result"]["from_cache"] is True and job["result"]["downloaded_objects"] == 0
    assert md5_tree(jp_root_dir / "x" / "y") == expected_tree(release("iris", "v1.1.0"))


async def test_pull_events_stream_until_done(jp_fetch: Any, jp_root_dir: Path) -> None:
    job_id = await start_pull(jp_fetch, dataset="multi")
    response = await jp_fetch(*API, "pulls", job_id, "events", request_timeout=60)
    assert response.headers["Content-Type"] == "text/event-stream"
    text = response.body.decode()
    assert text.endswith("\n\n")
    events = [json.loads(line[len("data: ") :]) for line in text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in text.split("\n\n") if line)
    assert events[-1]["status"] == "done"
    assert events[-1]["result"]["version"] == "v1.0.0"
    assert all(e["id"] == job_id for e in events)
    assert [e["status"] for e in events[:-1]] == ["running"] * (len(events) - 1)
    assert md5_tree(jp_root_dir / "data" / "multi") == expected_tree(release("multi", "v1.0.0"))

    # a finished pull streams its final state once
    again = (await jp_fetch(*API, "pulls", job_id, "events")).body.decode()
    assert again.count("data: ") == 1 and json.loads(again[6:])["status"] == "done"


async def test_lineage(jp_fetch: Any, registry: Registry) -> None:
    assert body(await jp_fetch(*API, "lineage")) == {"pulls": [], "status": []}
    await wait_for(jp_fetch, await start_pull(jp_fetch, dataset="iris", version="v1.0.0"))
    lineage = body(await jp_fetch(*API, "lineage"))
    [record] = lineage["pulls"]
    assert (record["dataset"], record["version"], record["path"]) == ("iris", "v1.0.0", "data/iris")
    assert record["rev"] == registry.rev("iris@v1.0.0")
    [row] = lineage["status"]
    assert (row["path"], row["state"], row["changed"]) == ("data/iris", "unchanged", [])


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"dataset": "iris", "bogus": 1}, "Unknown field 'bogus'"),
        ({"dataset": "iris", "path": "../outside"}, "outside the workspace"),
        ({"dataset": "iris", "path": "/etc/x"}, "outside the workspace"),
        ({"dataset": "iris", "path": "-rf"}, "must not start with '-'"),
        ({"dataset": "../etc"}, "Invalid dataset name"),
        ({"dataset": "iris@v1;rm"}, "Invalid version"),
        ({"dataset": "iris", "version": "../v1"}, "Invalid version"),
        ({"dataset": "iris", "force": "yes"}, "'force' a boolean"),
        ({"dataset": "iris", "version": 2}, "'version' must be a string"),
        ({"dataset": "iris", "path": ["a"]}, "'path' must be a string"),
        ({}, "'dataset' must be a string"),
        (["iris"], "must be a JSON object"),
        ("not json", "must be JSON"),
    ],
)
async def test_bad_pull_requests_are_400(
    jp_fetch: Any, jp_root_dir: Path, payload: Any, fragment: str
) -> None:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    code, error = await error_of(jp_fetch, "pulls", method="POST", body=raw)
    assert code == 400
    assert fragment in error["message"]
    assert not (jp_root_dir / "data").exists()
    assert not (jp_root_dir.parent / "outside").exists()


async def test_unknown_pull_is_404(jp_fetch: Any) -> None:
    code, error = await error_of(jp_fetch, "pulls", "0123456789abcdef")
    assert code == 404 and error["message"] == "No pull 0123456789abcdef"
    code, error = await error_of(jp_fetch, "pulls", "0123456789abcdef", "events")
    assert code == 404


async def test_failing_pull_reports_its_error(jp_fetch: Any, jp_root_dir: Path) -> None:
    job = await wait_for(jp_fetch, await start_pull(jp_fetch, dataset="iris", version="v9"))
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"]["status"] == 404
    assert job["error"]["message"] == "iris has no version v9; versions: v1.0.0, v1.1.0, v2.0.0"
    job = await wait_for(jp_fetch, await start_pull(jp_fetch, dataset="penguins"))
    assert job["status"] == "failed" and "available: iris, multi" in job["error"]["message"]
    assert not (jp_root_dir / "data").exists()


def concrete(pattern: str) -> str:
    """A URL path matching a route pattern of ``route_table()``."""
    path = re.sub(r"\(\?P<name>[^)]*\)", "iris", pattern)
    path = re.sub(r"\(\?P<job_id>[^)]*\)", "0123456789abcdef", path)
    assert "(" not in path, pattern
    return path


ROUTES = [
    (concrete(pattern), method)
    for pattern, handler in route_table()
    for method in ("get", "post", "put", "patch", "delete")
    if method in vars(handler)
]


def test_every_route_is_covered() -> None:
    assert len(route_table()) == 16
    assert ("/dsdata/api/pulls", "post") in ROUTES
    assert ("/dsdata/api/experiments", "post") in ROUTES
    assert ("/dsdata/api/models", "post") in ROUTES
    assert ("/dsdata/api/models/iris/promotions", "post") in ROUTES
    assert ("/dsdata/api/models/iris/history", "get") in ROUTES
    assert ("/dsdata/api/connections/iris/imports", "post") in ROUTES
    assert ("/dsdata/api/jobs", "post") in ROUTES
    assert ("/dsdata/api/jobs/0123456789abcdef", "delete") in ROUTES
    assert ("/dsdata/api/jobs/0123456789abcdef/log", "get") in ROUTES
    assert len(ROUTES) == 20


@pytest.mark.parametrize(("path", "method"), ROUTES)
async def test_every_route_refuses_unauthenticated_requests(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_base_url: str,
    jp_fetch: Any,
    jp_root_dir: Path,
    path: str,
    method: str,
) -> None:
    url = url_path_join(jp_base_url, path)
    kwargs: dict[str, Any] = {"method": method.upper(), "raise_error": False}
    if method in ("post", "put", "patch"):
        kwargs["body"] = json.dumps({"dataset": "iris"})
    anonymous = await http_server_client.fetch(url, follow_redirects=False, **kwargs)
    if anonymous.code == 302:
        assert "/login" in anonymous.headers["Location"]
    else:
        assert anonymous.code == 403, (path, method, anonymous.code)
    assert not (jp_root_dir / "data").exists()
    # the same request with the token reaches the handler (the route exists)
    authed = await jp_fetch(path, **kwargs)
    assert authed.code not in (302, 403), (path, method, authed.code)
    # 400: this body is not an experiment/model request; 502: no MLflow in this test
    assert authed.code in (200, 202, 400, 404, 502)
