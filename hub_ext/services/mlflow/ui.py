"""The MLflow UI behind the hub's login: a reverse proxy in the catalog service.

MLflow is never routed through the public proxy; sandboxes reach it directly
(``MLFLOW_TRACKING_URI``) with their hub token. A user's browser reaches the UI at
``/services/catalog/mlflow/`` instead: the catalog service checks the hub login (OAuth cookie
or hub token), drops the browser's credentials and forwards the request with its own hub
token and the user it acts for (``X-Dsplatform-User``), so MLflow applies that user's
permissions (:mod:`hub_ext.services.mlflow.auth`). The MLflow UI uses relative URLs
(``static-files/``, ``ajax-api/``) and hash routes, so it works under that prefix unchanged.

Cross-site requests: MLflow's single-page app cannot send JupyterHub's XSRF token, so a
cookie-authenticated request that is not a plain page view is accepted when the browser
itself marks it same-origin (``Sec-Fetch-Site: same-origin``, which pages cannot forge);
anything else goes through JupyterHub's own XSRF check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from tornado import httpclient, httputil, web
from tornado.log import app_log
from tornado.simple_httpclient import HTTPTimeoutError

from hub_ext.services.handler import HubServiceHandler

# request headers never forwarded: the hub's credentials, and what only the hop needs
DROPPED_REQUEST_HEADERS = frozenset(
    h.lower()
    for h in (
        "Authorization",
        "Cookie",
        "Host",
        "Origin",
        "Referer",
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Accept-Encoding",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Real-Ip",
        "X-Xsrftoken",
        "X-Csrftoken",
        "X-Dsplatform-User",  # only the route itself says whom it acts for
    )
)
# response headers not copied back: hop-by-hop, and lengths/encodings tornado sets itself
DROPPED_RESPONSE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Content-Length",
        "Content-Encoding",
        "Set-Cookie",
        "Server",
        "Date",
    )
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def has_web_ui(tracking_uri: str) -> bool:
    """Whether the tracking URI is a server (with the UI), not a file or database store."""
    return tracking_uri.startswith(("http://", "https://"))


def upstream_url(tracking_uri: str, path: str, query: str) -> str:
    """The tracking server's URL for ``path`` (below the proxy's prefix) and ``query``."""
    url = f"{tracking_uri.rstrip('/')}/{path.lstrip('/')}"
    return f"{url}?{query}" if query else url


def forwarded_request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The browser's request headers without the hub's credentials or hop-by-hop ones."""
    return {k: v for k, v in headers if k.lower() not in DROPPED_REQUEST_HEADERS}


def response_header(line: str) -> tuple[str, str] | None:
    """A header line of the tracking server's answer as the browser gets it, or None when it
    is not passed on (cookies, hop-by-hop headers, lengths and encodings tornado sets)."""
    name, _, value = line.partition(":")
    if not name.strip() or name.strip().lower() in DROPPED_RESPONSE_HEADERS:
        return None
    return name.strip(), value.strip()


def acting_for(user: Mapping[str, str]) -> dict[str, str]:
    """MLflow's credentials for a logged-in hub user: the catalog's own hub token (a trusted
    service) and the user it acts for, so MLflow applies that user's permissions."""
    import os

    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    return {"Authorization": f"Bearer {token}", "X-Dsplatform-User": user["name"]} if token else {}


def same_origin_fetch(headers: Mapping[str, str]) -> bool:
    """Whether the browser says the request comes from a page of this origin."""
    return headers.get("Sec-Fetch-Site", "") == "same-origin"


def page_view(headers: Mapping[str, str]) -> bool:
    """A browser navigating (not the app's fetch calls, which get 401 rather than a login
    page they could not read)."""
    mode = headers.get("Sec-Fetch-Mode")
    return mode == "navigate" or (mode is None and "text/html" in headers.get("Accept", ""))


class MLflowUIHandler(HubServiceHandler):
    """``/services/catalog/mlflow/(.*)`` -> the tracking server, for logged-in hub users."""

    SUPPORTED_METHODS = METHODS

    def initialize(self, tracking_uri: str, timeout: float = 300.0) -> None:
        self.tracking_uri = tracking_uri
        self.timeout = timeout
        self._started = False

    def check_xsrf_cookie(self) -> None:
        if same_origin_fetch(self.request.headers):
            return
        self.hub_auth.check_xsrf_cookie(self)

    def prepare(self) -> None:
        super().prepare()
        if self.current_user is None:
            if self.request.method in ("GET", "HEAD") and page_view(self.request.headers):
                # log in through the hub, then come back here
                self.redirect(self.get_login_url())
                raise web.Finish()
            raise web.HTTPError(401, "Log in to the hub (or send a hub token) to use MLflow")

    def compute_etag(self) -> None:
        return None  # MLflow's own ETag/Last-Modified headers pass through

    async def forward(self, path: str) -> None:
        if not has_web_ui(self.tracking_uri):
            raise web.HTTPError(404, "This platform's MLflow has no web UI (no tracking server)")
        self.check_body()
        with_body = self.body or self.request.method in ("POST", "PUT", "PATCH")
        body = self.body if with_body else None
        request = httpclient.HTTPRequest(
            upstream_url(self.tracking_uri, path, self.request.query),
            method=self.request.method or "GET",
            headers={
                **forwarded_request_headers(self.request.headers.get_all()),
                **acting_for(self.current_user),
            },
            body=body,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            decompress_response=True,
            request_timeout=self.timeout,
            header_callback=self._on_header,
            streaming_callback=self._on_chunk,
        )
        try:
            # MLflow's own 4xx/5xx answers come back as they are; what raises is no answer
            await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, httpclient.HTTPClientError) as e:
            netloc = urlsplit(self.tracking_uri).netloc
            if not self._started and isinstance(e, HTTPTimeoutError):
                raise web.HTTPError(
                    504, f"MLflow at {netloc} did not answer within {self.timeout:g} s"
                ) from None
            if not self._started:
                raise web.HTTPError(502, f"MLflow at {netloc} is unreachable: {e}") from None
            # broken off after the status line: end the connection without the last chunk,
            # so the browser sees a cut-off download rather than a complete short one
            app_log.warning("MLflow broke off %s: %s", request.url, e)
            self.request.connection.close()  # type: ignore[union-attr]
            return
        self.finish()

    def _on_header(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line:
            return
        if line.startswith("HTTP/"):
            start = httputil.parse_response_start_line(line)
            # a 100 Continue comes before the real status line
            if start.code != 100:
                self.set_status(start.code, start.reason)
                self._clear_representation_headers()
                self._started = True
            return
        header = response_header(line)
        if header is not None:
            self.add_header(*header)

    def _clear_representation_headers(self) -> None:
        for name in ("Content-Type", "Server", "Date"):
            self.clear_header(name)

    def _on_chunk(self, chunk: bytes) -> None:
        self.write(chunk)
        self.flush()

    # every method MLflow's app uses goes through unchanged
    get = head = post = put = patch = delete = forward
