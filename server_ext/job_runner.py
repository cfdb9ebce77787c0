"""A notebook job's process: ``python -m server_ext.job_runner``, started by the spawner in
place of ``jupyterhub-singleuser`` (same account, workspace, cgroups, devices and sandbox
environment), with the job in ``DSPLATFORM_JOB`` (set by the hub from its record).

It executes the notebook with papermill (parameters injected into the cell tagged
``parameters``, as papermill does) into ``jobs/<id>/<notebook>`` beside the notebook, with
its output and errors in ``jobs/<id>/log.txt`` (never in the hub's log); with ``commit``, a
succeeded job is committed as an experiment run (:class:`~server_ext.experiments.
ExperimentService`: parameters as params, the executed notebook as an output). It reports its
exit code to the hub (``POST /hub/api/dsplatform/jobs/<id>/result``, the server's own
token) and exits with it. While it runs, its port answers 404 to everything: the hub checks
that the server is up, and there is nothing to serve.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class _Nothing(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_nothing() -> None:
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    if not url.port:
        return
    server = ThreadingHTTPServer((url.hostname or "127.0.0.1", url.port), _Nothing)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def report(job_id: str, exit_code: int) -> None:
    api, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    if not api or not token:
        return
    request = urllib.request.Request(
        f"{api.rstrip('/')}/dsplatform/jobs/{job_id}/result", method="POST",
        data=json.dumps({"exit_code": exit_code}).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30):
            pass
    except OSError as e:
        print(f"dsplatform: could not report the exit code to the hub: {e}", flush=True)


def execute(job: dict[str, Any], workspace: Path) -> int:
    import papermill

    notebook = workspace / job["notebook"]
    output = workspace / job["output"]
    print(f"dsplatform: job {job['id']}: {job['notebook']} -> {job['output']}", flush=True)
    if not notebook.is_file():
        print(f"dsplatform: no notebook {job['notebook']} in the workspace", flush=True)
        return 2
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=job.get("parameters") or {},
            cwd=str(notebook.parent), log_output=True, progress_bar=False,
            kernel_name="python3",
        )  # fmt: skip
    except papermill.PapermillExecutionError as e:
        print(f"dsplatform: the notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue}",
              flush=True)  # fmt: skip
        return 1
    print("dsplatform: the notebook ran to its end", flush=True)
    if job.get("commit"):
        from server_ext.experiments import ExperimentService

        result = ExperimentService(root=workspace).commit(
            f"Notebook job {job['id']}: {job['notebook']}",
            params={k: json.dumps(v) if not isinstance(v, str) else v
                    for k, v in (job.get("parameters") or {}).items()},
            outputs=[job["output"]],
        )  # fmt: skip
        print(f"dsplatform: committed {result.git_sha[:10]} run {result.run_id}", flush=True)
    return 0


def main() -> None:
    job = json.loads(os.environ["DSPLATFORM_JOB"])
    workspace = Path(os.environ.get("DSPLATFORM_WORKSPACE") or os.getcwd())
    log_path = workspace / job["log"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = sys.stdout
    serve_nothing()
    try:
        code = execute(job, workspace)
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    report(job["id"], code)
    os._exit(code)


if __name__ == "__main__":
    main()
