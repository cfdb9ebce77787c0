"""A serving worker: one model version, loaded from a local directory, answering MLflow's
scoring protocol on a Unix socket it inherits (``python -I -m hub_ext.services.serving.worker``).

The pool (:mod:`hub_ext.services.serving.pool`) starts one per served (model, version), as an
unprivileged account with a clean environment (no hub token, no MLflow credential); it binds
the listening socket itself and passes it as ``--fd``, so no worker can replace another's
socket. The process makes itself non-dumpable before loading the model, so other workers
under the same account cannot ptrace it or read its memory. Requests are parsed and answered
by MLflow's own scoring code (``mlflow.pyfunc.scoring_server.invocations``): every JSON format,
CSV, parquet and ``params``, with MLflow's error bodies (``error_code``).

    GET /ping                 200 once the model is loaded
    POST /invocations         the body and its Content-Type, as ``mlflow models serve`` takes it
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any

_PR_SET_DUMPABLE = 4


class Handler(BaseHTTPRequestHandler):
    model: Any = None
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # the catalog logs the calls

    def address_string(self) -> str:
        return "catalog"  # a Unix socket has no peer address

    def answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self.answer(200, json.dumps({"pid": os.getpid(), "uid": os.getuid()}))
        else:
            self.answer(
                404, json.dumps({"message": f"no {self.path}", "error_code": "ENDPOINT_NOT_FOUND"})
            )

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self.answer(
                404, json.dumps({"message": f"no {self.path}", "error_code": "ENDPOINT_NOT_FOUND"})
            )
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, text = score(self.model, body, self.headers.get("Content-Type", "application/json"))
        self.answer(status, text)


def score(model: Any, body: bytes, content_type: str) -> tuple[int, str]:
    """MLflow's scoring of ``body``: (status, JSON text), errors with MLflow's error_code."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        response = scoring_server.invocations(
            body, content_type, model, model.metadata.get_input_schema()
        )
    except MlflowException as e:
        return e.get_http_status_code(), json.dumps(
            {"message": e.message, "error_code": e.error_code}
        )
    text = response.response if isinstance(response.response, str) else str(response.response)
    if response.mimetype != "application/json":  # e.g. 415 for an unknown content type
        return response.status, json.dumps({"message": text, "error_code": "BAD_REQUEST"})
    return response.status, text


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, fd: int) -> None:
        super().__init__("", Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket.socket(fileno=fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub_ext.services.serving.worker")
    parser.add_argument("--model-dir", required=True, help="the model version's files (MLmodel)")
    parser.add_argument("--fd", type=int, required=True, help="the listening Unix socket")
    args = parser.parse_args(argv)
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
    import mlflow.pyfunc

    Handler.model = mlflow.pyfunc.load_model(args.model_dir)
    with Server(args.fd) as server:
        print(f"serving {args.model_dir} as uid {os.getuid()}", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
