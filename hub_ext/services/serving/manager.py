"""The serving manager: the worker pool behind a small HTTP API, for the Helm chart's
``serving`` Deployment (``python -m hub_ext.services.serving.manager``), so models never run
in the hub pod. It holds no hub token and no service-account token; the catalog is its only
client (a NetworkPolicy admits nothing else) and authenticates with a shared secret
(``$DSPLATFORM_SERVING_SECRET``, read once and removed from the environment).

    GET  /ping, /health                  liveness; the live workers
    PUT  /models/{key}                   a model version's files (gzipped tar from the catalog)
    POST /models/{key}/invocations       MLflow's scoring protocol, answered by the worker;
                                         404 with ``X-Dsplatform-Serving: not-loaded`` when the
                                         files are not here yet
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import re
import signal
import tarfile
from pathlib import Path
from typing import Any

from tornado import ioloop, web

from hub_ext.services.handler import ERROR_CODES
from hub_ext.services.serving.files import unpack
from hub_ext.services.serving.pool import WorkerPool

KEY_RE = r"(m-[0-9a-f]{16}-v[0-9]{1,9})"
MAX_MODEL_BYTES = 2 << 30
NOT_LOADED = "not-loaded"


class ManagerHandler(web.RequestHandler):
    def prepare(self) -> None:
        if self.request.path in ("/ping", "/health"):
            return
        given = self.request.headers.get("Authorization", "")
        expected = f"Bearer {self.settings['secret']}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise web.HTTPError(401, "the catalog's serving secret is required")

    @property
    def pool(self) -> WorkerPool:
        pool: WorkerPool = self.settings["pool"]
        return pool

    def model_dir(self, key: str) -> Path:
        return Path(self.settings["models"]) / key

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) else None
        code = ERROR_CODES.get(status_code, "INTERNAL_ERROR")
        self.finish({"message": message or self._reason, "error_code": code})


class PingHandler(ManagerHandler):
    def get(self) -> None:
        if self.request.path == "/health":
            self.finish({"status": "ok", "workers": self.pool.status()})
        else:
            self.finish("OK")


class ModelHandler(ManagerHandler):
    def put(self, key: str) -> None:
        try:
            unpack(self.request.body, self.model_dir(key))
        except (tarfile.TarError, ValueError, OSError, EOFError) as e:
            raise web.HTTPError(400, f"not a model archive: {e}") from None
        self.set_status(204)


class InvocationsHandler(ManagerHandler):
    async def post(self, key: str) -> None:
        model_dir = self.model_dir(key)
        if not (model_dir / "MLmodel").is_file():
            self.set_status(404)
            self.set_header("X-Dsplatform-Serving", NOT_LOADED)
            self.finish(
                {"message": f"model {key} is not loaded", "error_code": "RESOURCE_DOES_NOT_EXIST"}
            )
            return
        content_type = self.request.headers.get("Content-Type", "application/json")
        answer = await self.pool.invoke(key, model_dir, self.request.body, content_type)
        self.set_status(answer.status)
        self.set_header("Content-Type", "application/json")
        self.finish(answer.body)


def make_app(pool: WorkerPool, models: Path, secret: str) -> web.Application:
    return web.Application(
        [
            (r"/(?:ping|health)", PingHandler),
            (rf"/models/{KEY_RE}", ModelHandler),
            (rf"/models/{KEY_RE}/invocations", InvocationsHandler),
        ],
        pool=pool,
        models=str(models),
        secret=secret,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hub_ext.services.serving.manager")
    parser.add_argument("--root", default=os.environ.get("DSPLATFORM_SERVING_ROOT", "/srv/serving"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    secret = os.environ.pop("DSPLATFORM_SERVING_SECRET", "")
    if len(secret) < 16 or not re.fullmatch(r"[\x21-\x7e]+", secret):
        raise SystemExit("DSPLATFORM_SERVING_SECRET must be set (16 or more printable characters)")
    root = Path(args.root)
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True, mode=0o700)
    pool = WorkerPool(root, args.max_workers, args.start_timeout, args.request_timeout)
    app = make_app(pool, models, secret)
    app.listen(args.port, "0.0.0.0", max_body_size=MAX_MODEL_BYTES)
    print(
        json.dumps({"serving": args.port, "root": str(root), "max_workers": args.max_workers}),
        flush=True,
    )
    loop = ioloop.IOLoop.current()
    for signum in (signal.SIGINT, signal.SIGTERM):  # stop the workers too, not orphan them
        signal.signal(signum, lambda *_: loop.add_callback_from_signal(loop.stop))
    try:
        loop.start()
    finally:
        pool.close()


if __name__ == "__main__":
    main()
