"""The emulator as a separate process (``python -m tests.kube_emulator``), for tests.

Tests talk to it over HTTP like an admin's kubectl would; the hub finds it through the
kubeconfig it writes (``KUBECONFIG``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from .. import processes

REPO = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    def __init__(
        self,
        state: Path,
        *,
        nodes: Sequence[dict[str, Any]],
        namespaces: Sequence[str] = ("default",),
        unpullable: Sequence[str] = (),
    ) -> None:
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = self.state / "kubeconfig"
        self.nodes_file = self.state / "nodes.json"
        self.nodes_file.write_text(json.dumps(list(nodes)))
        self.namespaces = list(namespaces)
        self.unpullable = list(unpullable)
        self.log_path = self.state / "emulator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.session = requests.Session()

    def start(self, timeout: float = 30) -> EmulatorProcess:
        args = [sys.executable, "-m", "tests.kube_emulator", "--kubeconfig", str(self.kubeconfig),
                "--state-dir", str(self.state / "cluster"), "--nodes", str(self.nodes_file)]  # fmt: skip
        for ns in self.namespaces:
            args += ["--namespace", ns]
        for pattern in self.unpullable:
            args += ["--unpullable", pattern]
        self.proc = processes.launch(args, cwd=REPO, log_path=self.log_path)
        processes.wait_ready(
            self.proc,
            self._read_kubeconfig,
            "emulator",
            timeout,
            self.log,
            interval=0.1,
            not_ready="did not start in",
        )
        return self

    def _read_kubeconfig(self) -> bool:
        """Ready once the kubeconfig is written; it names the server's URL."""
        if not self.kubeconfig.exists():
            return False
        text = self.kubeconfig.read_text()
        self.url = text.split('server: "', 1)[1].split('"', 1)[0]
        return True

    def stop(self, timeout: float = 30) -> None:
        processes.stop(self.proc, timeout, term_group=False, kill_group=False)

    def log(self) -> str:
        return processes.log_tail(self.log_path, 4000)

    # --- API, as kubectl would use it ---------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}{path}", timeout=30, **kw)

    def list(self, plural: str, namespace: str, **params: str) -> list[dict[str, Any]]:
        r = self.request("GET", f"/api/v1/namespaces/{namespace}/{plural}", params=params)
        r.raise_for_status()
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        r = self.request("GET", f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        found: dict[str, Any] = r.json()
        return found

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.request("POST", f"/api/v1/namespaces/{namespace}/{plural}", json=body)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def delete(self, plural: str, namespace: str, name: str, grace: int = 1) -> None:
        r = self.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/{plural}/{name}",
            params={"gracePeriodSeconds": str(grace)},
        )  # fmt: skip
        assert r.status_code in (200, 404), r.text

    def wait_gone(self, plural: str, namespace: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.get(plural, namespace, name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plural}/{name} still there after {timeout}s")
            time.sleep(0.2)
