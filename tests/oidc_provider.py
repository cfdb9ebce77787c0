"""A real OpenID Connect provider for the OAuth tests: ``oidc-provider-mock`` in a subprocess.

Users and their claims (``groups`` among them) are preset when it starts and can be changed
while it runs (``PUT /users/{sub}``), as an identity provider's admin would. The login
itself is the browser flow done with plain HTTP requests: hub -> authorize form -> the
provider's redirect to the hub's callback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from . import processes
from .hub import free_port


class OIDCProvider:
    """``python -m oidc_provider_mock`` on 127.0.0.1 with preset users."""

    def __init__(self, log_dir: Path, users: Mapping[str, Mapping[str, Any]]):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.users = {sub: dict(claims) for sub, claims in users.items()}
        self.log_path = Path(log_dir) / "oidc-provider.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> OIDCProvider:
        command = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        for sub, claims in self.users.items():
            command += ["--user-claims", json.dumps({"sub": sub, **claims})]
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = processes.launch(command, env=env, log_path=self.log_path)
        url = f"{self.issuer}/.well-known/openid-configuration"
        processes.wait_ready(
            self.proc,
            lambda: processes.answers(url),
            "OIDC provider",
            timeout,
            self.log,
            interval=0.1,
        )
        return self

    def stop(self) -> None:
        processes.stop(self.proc, 10)

    def set_claims(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Replace a user's claims (the provider's admin changing their groups)."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=dict(claims), timeout=10)
        response.raise_for_status()

    def log(self) -> str:
        return processes.log_tail(self.log_path, 4000)


def browser_login(
    hub_url: str, sub: str, session: requests.Session | None = None
) -> tuple[requests.Session, requests.Response, Sequence[str]]:
    """Log in to the hub as ``sub`` the way a browser does; the hub's answer to the callback.

    GET /hub/oauth_login -> 302 to the provider's authorize endpoint -> its form -> POST the
    user -> 302 to /hub/oauth_callback?code=..&state=.. -> the hub's answer (302 on success).
    Returns the session (with the hub's cookies), that answer and the URLs visited.
    """
    s = session or requests.Session()
    visited = []
    response = s.get(f"{hub_url}/hub/oauth_login", allow_redirects=False, timeout=30)
    assert response.status_code == 302, (response.status_code, response.text[:500])
    authorize = urljoin(response.url, response.headers["Location"])
    visited.append(authorize)
    form = s.get(authorize, timeout=30)
    assert form.status_code == 200 and 'name="sub"' in form.text, form.text[:500]
    redirect = s.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert redirect.status_code == 302, (redirect.status_code, redirect.text[:500])
    callback = urljoin(authorize, redirect.headers["Location"])
    visited.append(callback)
    answer = s.get(callback, allow_redirects=False, timeout=60)
    return s, answer, visited
