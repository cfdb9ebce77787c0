"""The MLflow UI route's pure parts: what is forwarded, what counts as a page view or a
same-origin call. (Through the real hub, proxy and MLflow: test_catalog_service and the
browser story in test_lab_e2e.)"""

from __future__ import annotations

import pytest

from hub_ext.mlflow_ui import (
    forwarded_request_headers,
    forwarded_response_headers,
    page_view,
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
        ("Set-Cookie", "a=b"),
        ("Content-Type", "text/html"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Encoding", "gzip"),  # tornado's client has decompressed the body
        ("Cache-Control", "no-cache"),
        ("ETag", '"abc"'),
    ]
    assert forwarded_response_headers(upstream) == [
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
