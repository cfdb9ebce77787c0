"""The catalog's side of the serving manager (:mod:`.manager`): the same ``invoke`` as the
local pool, over HTTP; a version's files are uploaded the first time the manager lacks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from hub_ext.services.serving.files import pack
from hub_ext.services.serving.manager import NOT_LOADED
from hub_ext.services.serving.pool import Answer


class RemoteServing:
    """Workers in the serving Deployment, reached at ``url`` with ``secret``."""

    def __init__(self, url: str, secret: str, start_timeout: float, request_timeout: float) -> None:
        self.url = url.rstrip("/")
        self.secret = secret
        self.timeout = start_timeout + request_timeout + 10
        self.client = AsyncHTTPClient(force_instance=True, max_clients=64)

    async def _send(self, method: str, path: str, body: bytes, content_type: str) -> Any:
        request = HTTPRequest(
            f"{self.url}{path}",
            method=method,
            body=body,
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": content_type},
            request_timeout=self.timeout,
        )
        return await self.client.fetch(request, raise_error=False)

    async def invoke(self, key: str, model_dir: Path, body: bytes, content_type: str) -> Answer:
        path = f"/models/{key}/invocations"
        response = await self._send("POST", path, body, content_type)
        if response.code == 404 and response.headers.get("X-Dsplatform-Serving") == NOT_LOADED:
            upload = await self._send("PUT", f"/models/{key}", pack(model_dir), "application/gzip")
            if upload.code != 204:
                return Answer.error(
                    502,
                    "TEMPORARILY_UNAVAILABLE",
                    f"The serving manager refused the model: HTTP {upload.code}",
                )
            response = await self._send("POST", path, body, content_type)
        if response.code == 599:
            return Answer.error(
                502,
                "TEMPORARILY_UNAVAILABLE",
                f"The serving manager is unreachable: {response.error}",
            )
        return Answer(response.code, response.body or b"{}")

    def status(self) -> list[dict[str, Any]]:
        return [{"manager": self.url}]

    def close(self) -> None:
        self.client.close()
