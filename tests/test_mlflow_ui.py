"""The MLflow UI route's pure parts: what is forwarded, what counts as a page view or a
same-origin call. (Through the real hub, proxy and MLflow: test_catalog_service and the
browser story in test_lab_e2e.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.services.mlflow.ui import (
    MLflowUIHandler,
    forwarded_request_headers,
    page_view,
    response_header,
    same_origin_fetch,
    upstream_url,
)


def test_the_hubs_credentials_never_reach_mlflow() -> None:
    browser = [
        ("Cookie", "jupyterhub-services=x; _xsrf=y"),
        ("Authorization", "token hub-secret"),
        ("Host", "hub.example.org"),
        ("Origin", "https://hub.example.org"),
        ("Referer", "https://hub.example.org/services/catalog/mlflow/"),
        ("X-XSRFToken", "y"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Connection", "keep-alive"),
        ("Content-Length", "12"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
        ("If-None-Match", '"abc"'),
    ]
    assert forwarded_request_headers(browser) == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "If-None-Match": '"abc"',
    }


def test_mlflow_cannot_set_cookies_on_the_hubs_origin() -> None:
    upstream = [
        "Set-Cookie: a=b",
        "Content-Type: text/html",
        "Transfer-Encoding: chunked",
        "Content-Encoding: gzip",  # tornado's client has decompressed the body
        "Cache-Control: no-cache",
        'ETag: "abc"',
    ]
    assert [h for line in upstream if (h := response_header(line))] == [
        ("Content-Type", "text/html"),
        ("Cache-Control", "no-cache"),
        ("ETag", '"abc"'),
    ]


@pytest.mark.parametrize(
    ("base", "path", "query", "url"),
    [
        ("http://mlflow:5000", "", "", "http://mlflow:5000/"),
        ("http://mlflow:5000/", "static-files/a.js", "", "http://mlflow:5000/static-files/a.js"),
        (
            "http://127.0.0.1:5000",
            "ajax-api/2.0/mlflow/runs/get",
            "run_id=a&x=%2F",
            "http://127.0.0.1:5000/ajax-api/2.0/mlflow/runs/get?run_id=a&x=%2F",
        ),
        (
            "https://m.example.org/base",
            "/get-artifact",
            "",
            "https://m.example.org/base/get-artifact",
        ),
    ],
)
def test_upstream_url(base: str, path: str, query: str, url: str) -> None:
    assert upstream_url(base, path, query) == url


@pytest.mark.parametrize(
    ("headers", "navigating"),
    [
        ({"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, True),
        ({"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, False),  # the app's fetch
        ({"Accept": "text/html,application/xhtml+xml"}, True),  # a browser without fetch metadata
        ({"Accept": "*/*"}, False),  # a program: 401, not a login page
        ({}, False),
    ],
)
def test_only_page_views_are_sent_to_the_login(headers: dict[str, str], navigating: bool) -> None:
    assert page_view(headers) is navigating


@pytest.mark.parametrize(
    ("site", "same"),
    [
        ("same-origin", True),
        ("same-site", False),
        ("cross-site", False),
        ("none", False),
        (None, False),
    ],
)
def test_same_origin_is_what_the_browser_says(site: str | None, same: bool) -> None:
    assert same_origin_fetch({} if site is None else {"Sec-Fetch-Site": site}) is same


# --- the forwarding itself, against real upstream servers (login is tested through the hub) ---
class Upstream(web.RequestHandler):
    async def get(self, what: str) -> None:
        if what == "slow":
            await asyncio.sleep(5)
        if what == "cut":  # a download MLflow breaks off halfway
            self.write(b"x" * 65536)
            await self.flush()
            self.request.connection.close()  # type: ignore[union-attr]
            return
        self.set_header("Set-Cookie", "mlflow=1")
        self.write({"path": self.request.path, "query": self.request.query,
                    "cookie": self.request.headers.get("Cookie"),
                    "authorization": self.request.headers.get("Authorization")})  # fmt: skip

    async def delete(self, what: str) -> None:
        self.set_status(204 if self.request.body == b'{"id": 1}' else 400)


class LoggedIn(MLflowUIHandler):
    """The route's handler for a user the hub has already vouched for."""

    def get_current_user(self) -> dict[str, str]:
        return {"name": "alice"}


def serve(app: web.Application) -> tuple[Any, int]:
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    return server, port


@pytest.mark.asyncio
async def test_forwarding_streams_and_reports_upstream_failures() -> None:
    upstream, up_port = serve(web.Application([(r"/(.*)", Upstream)]))
    dead, dead_port = bind_unused_port()
    dead.close()  # nothing listens there: connection refused
    proxy, port = serve(
        web.Application(
            [
                (r"/m/(.*)", LoggedIn, {"tracking_uri": f"http://127.0.0.1:{up_port}"}),
                (r"/dead/(.*)", LoggedIn, {"tracking_uri": f"http://127.0.0.1:{dead_port}"}),
                (r"/file/(.*)", LoggedIn, {"tracking_uri": "sqlite:///mlflow.db"}),
                (
                    r"/t/(.*)",
                    LoggedIn,
                    {"tracking_uri": f"http://127.0.0.1:{up_port}", "timeout": 0.5},
                ),
            ]
        )
    )
    client = AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    try:
        r = await client.fetch(
            f"{base}/m/ajax-api/x?a=1",
            headers={"Cookie": "jupyterhub-services=secret", "Authorization": "token t"},
        )
        assert json.loads(r.body) == {
            "path": "/ajax-api/x", "query": "a=1", "cookie": None, "authorization": None}  # fmt: skip
        assert "Set-Cookie" not in r.headers
        r = await client.fetch(
            f"{base}/m/y", method="DELETE", body=b'{"id": 1}', allow_nonstandard_methods=True
        )
        assert r.code == 204  # a DELETE's JSON body goes along

        with pytest.raises(HTTPClientError) as cut:
            await client.fetch(f"{base}/m/cut")
        assert cut.value.code == 599  # cut off, not a complete short download
        for path, code, message in (
            ("/dead/", 502, f"MLflow at 127.0.0.1:{dead_port} is unreachable"),
            ("/file/", 404, "no web UI"),
            ("/t/slow", 504, f"MLflow at 127.0.0.1:{up_port} did not answer within 0.5 s"),
        ):
            r = await client.fetch(base + path, raise_error=False)
            assert r.code == code and message in json.loads(r.body)["message"], r.body
    finally:
        proxy.stop()
        upstream.stop()
