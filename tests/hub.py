"""A real JupyterHub (with configurable-http-proxy) in a subprocess, for tests and benchmarks.

It runs the embedded ``jupyterhub_config.py`` with ``DSPLATFORM_EXTRA_CONFIG`` pointing at
a file that sets free ports, an admin service token and whatever the test adds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import requests

from . import processes

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "dsplatform-test-admin-token-0123456789"
# a hub without MLflow or the catalog, whose servers outlive it; profiles use "scipy"
BARE_HUB = """
c.JupyterHub.cleanup_servers = False
c.Spawner.start_timeout = 90
c.PlatformMLflow.enabled = False
c.PlatformCatalog.enabled = False
c.ProfileSpawner.toolchains = {"scipy": {"local_python": None}}
"""


def traversable(path: Path) -> None:
    """Let other accounts pass through ``path`` and every directory above it that we own."""
    for directory in [*reversed(path.resolve().parents), path.resolve()]:
        st = directory.stat()
        if st.st_uid == os.geteuid() and not st.st_mode & 0o001:
            directory.chmod(st.st_mode & 0o7777 | 0o011)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, never one this session handed out before: the kernel
    may offer a just-closed ephemeral port again, and one hub's public and proxy-API ports
    once came out equal that way."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class HubProcess:
    """Start, stop and talk to one JupyterHub process with its own state directory."""

    def __init__(self, state: Path, extra_config: str = "", env: Mapping[str, str] | None = None):
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        # sandbox accounts pass through to their workspaces (pytest makes its dirs 0700)
        traversable(self.state)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.mlflow_port = free_port()
        self.catalog_port = free_port()
        self.dask_ports = (free_port(), free_port(), free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/hub/api"
        self.extra_config = extra_config
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.state / "hub.log"
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}

    def write_config(self) -> Path:
        path = self.state / "site_config.py"
        path.write_text(
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.proxy_api_port}'\n"
            f"c.PlatformMLflow.port = {self.mlflow_port}\n"
            f"c.PlatformCatalog.port = {self.catalog_port}\n"
            # dask-gateway only where a test turns it on (c.DaskClusters.enabled = True)
            "c.DaskClusters.enabled = False\n"
            f"c.DaskClusters.port, c.DaskClusters.scheduler_port, c.DaskClusters.api_port = "
            f"{self.dask_ports}\n"
            "c.JupyterHub.services = list(c.JupyterHub.get('services', [])) + [\n"
            f"    {{'name': 'test-admin', 'api_token': {ADMIN_TOKEN!r}}}]\n"
            "c.JupyterHub.load_roles = list(c.JupyterHub.get('load_roles', [])) + [\n"
            "    {'name': 'test-admin', 'services': ['test-admin'], 'scopes': [\n"
            "        'admin:users', 'admin:servers', 'admin:server_state', 'tokens',\n"
            "        'admin:groups', 'list:users', 'read:users', 'read:servers']}]\n"
            + self.extra_config
        )
        return path

    def start(self, timeout: float = 60) -> HubProcess:
        traversable(self.state)  # again: a pytest session starting meanwhile resets its root
        config = self.write_config()
        env = {
            **os.environ,
            "DSPLATFORM_STATE_DIR": str(self.state / "platform"),
            "DSPLATFORM_PORT": str(self.port),
            "DSPLATFORM_EXTRA_CONFIG": str(config),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.env,
        }
        command = [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")]
        self.proc = processes.launch(command, cwd=self.state, env=env, log_path=self.log_path)
        processes.wait_ready(
            self.proc,
            lambda: processes.answers(f"{self.api_url}/", session=self.session),
            "hub",
            timeout,
            self.log,
        )
        return self

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the hub (servers keep running if cleanup_servers is False)."""
        processes.stop(self.proc, timeout, term_group=False)

    def shutdown(self) -> None:
        """Stop every server, then the hub (the end of a test's or fixture's hub)."""
        try:
            self.stop_all_servers()
        finally:
            self.stop()

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def wait_mlflow(self, timeout: float = 60) -> str:
        """Wait until the hub-managed MLflow server answers; its URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.session.get(f"{self.mlflow_url}/health", timeout=2).status_code == 200:
                    return self.mlflow_url
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"MLflow did not answer within {timeout}s:\n{self.log()}")

    @contextlib.contextmanager
    def mlflow_as(self, user: str | None = None) -> Iterator[None]:
        """MLflow client calls of this process as ``user`` (their hub token, as a sandbox
        sends it), or without ``user`` as MLflow's own admin account (basic auth)."""
        if user is not None:
            env = {"MLFLOW_TRACKING_TOKEN": self.token_for(user)}
        else:
            password = (self.state / "platform" / "mlflow" / "admin_password").read_text()
            env = {"MLFLOW_TRACKING_USERNAME": "dsplatform-admin",
                   "MLFLOW_TRACKING_PASSWORD": password.strip()}  # fmt: skip
        with mock.patch.dict(os.environ, env):
            yield

    def log(self) -> str:
        return processes.log_tail(self.log_path, 6000)

    # --- API -------------------------------------------------------------------------
    def api(
        self, method: str, path: str, token: str | None = None, timeout: float = 30, **kw: Any
    ) -> requests.Response:
        headers = {"Authorization": f"token {token or ADMIN_TOKEN}"}
        return self.session.request(
            method, f"{self.api_url}{path}", headers=headers, timeout=timeout, **kw
        )

    def token_for(self, user: str) -> str:
        """A token of ``user`` (created with the user if needed)."""
        if user not in self._tokens:
            if self.api("GET", f"/users/{user}").status_code == 404:
                self.api("POST", f"/users/{user}").raise_for_status()
            r = self.api("POST", f"/users/{user}/tokens", json={"note": "tests"})
            r.raise_for_status()
            self._tokens[user] = r.json()["token"]
        return self._tokens[user]

    def scoped_token(self, user: str, scopes: list[str], note: str = "tests") -> str:
        """A new token of ``user`` (created with the user if needed) narrowed to ``scopes``."""
        if self.api("GET", f"/users/{user}").status_code == 404:
            self.api("POST", f"/users/{user}").raise_for_status()
        r = self.api("POST", f"/users/{user}/tokens", json={"scopes": scopes, "note": note})
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def spawn(
        self, user: str, server: str = "", options: Mapping[str, Any] | None = None
    ) -> requests.Response:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        return self.api("POST", path, token=self.token_for(user), json=dict(options or {}))

    def server_model(self, user: str, server: str = "") -> dict[str, Any] | None:
        model = self.api("GET", f"/users/{user}").json()
        found: dict[str, Any] | None = model.get("servers", {}).get(server)
        return found

    def server_state(self, user: str, server: str = "") -> dict[str, Any]:
        """The spawner state saved in the hub database (needs admin:server_state)."""
        model = self.server_model(user, server) or {}
        state: dict[str, Any] = model.get("state", {})
        return state

    def wait_ready(self, user: str, server: str = "", timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if model and model.get("ready"):
                return model
            if model is None:
                raise RuntimeError(f"{user}/{server} is gone:\n{self.log()}")
            time.sleep(0.2)
        raise TimeoutError(f"{user}/{server} not ready in {timeout}s:\n{self.log()}")

    def stop_server(self, user: str, server: str = "", timeout: float = 30) -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        r = self.api("DELETE", path)
        assert r.status_code in (202, 204, 404), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.server_model(user, server) is not None:
            time.sleep(0.2)

    def stop_all_servers(self) -> None:
        for model in self.api("GET", "/users").json():
            for name in list(model.get("servers", {})):
                self.stop_server(model["name"], name)

    def usage(self, user: str) -> dict[str, Any]:
        r = self.api("GET", "/dsplatform/usage", token=self.token_for(user))
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def assert_refuses_to_start(
    cwd: Path, env: Mapping[str, str], message: str, timeout: float
) -> None:
    """The embedded config under ``env`` stops the hub at start-up with ``message`` (exit 1,
    no hub database created under ``$DSPLATFORM_STATE_DIR``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "jupyterhub_config.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"dsplatform: invalid configuration: {message}" in proc.stderr, proc.stderr[-3000:]
    assert not (Path(env["DSPLATFORM_STATE_DIR"]) / "jupyterhub.sqlite").exists()
