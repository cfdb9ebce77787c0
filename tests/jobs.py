"""Helpers for the notebook-job tests: notebooks written into a user's workspace (owned by
the user's account, as if saved from their sandbox), job submission and waiting."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path
from typing import Any

import nbformat

from hub_ext.spawners.accounts import account_name

from .hub import HubProcess

FINISHED = ("succeeded", "failed", "cancelled", "timed-out")


def workspace(hub: HubProcess, user: str) -> Path:
    return hub.state / "platform" / "users" / user


def write_notebook(hub: HubProcess, user: str, name: str, *cells: str,
                   parameters: str = "") -> Path:  # fmt: skip
    """A notebook ``name`` in ``user``'s workspace: a ``parameters`` cell, then ``cells``."""
    book = nbformat.v4.new_notebook()
    if parameters:
        book.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    book.cells.extend(nbformat.v4.new_code_cell(c) for c in cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}  # fmt: skip
    path = workspace(hub, user) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, path)
    owner = account_uid(user)
    if owner is not None:
        for p in (path, *[q for q in path.parents if workspace(hub, user) in (q, *q.parents)]):
            os.chown(p, owner, owner)
    return path


def account_uid(user: str) -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(account_name("dsp-{username}", user)).pw_uid
    except KeyError:
        return None


def submit(hub: HubProcess, user: str, body: dict[str, Any]) -> Any:
    return hub.api("POST", "/dsplatform/jobs", token=hub.token_for(user), json=body)


def job(hub: HubProcess, user: str, job_id: str) -> dict[str, Any]:
    r = hub.api("GET", f"/dsplatform/jobs/{job_id}", token=hub.token_for(user))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def wait_job(hub: HubProcess, user: str, job_id: str, states: tuple[str, ...] = FINISHED,
             timeout: float = 120) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        found = job(hub, user, job_id)
        if found["state"] in states:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {found['state']} after {timeout} s: {found}"
                                 f"\n{hub.log()[-3000:]}")  # fmt: skip
        time.sleep(0.3)


def servers(hub: HubProcess, user: str) -> dict[str, Any]:
    found: dict[str, Any] = hub.api("GET", f"/users/{user}").json().get("servers", {})
    return found


def admin_page(hub: HubProcess) -> str:
    """The admin usage page's HTML, logged in as ``admin`` (a page: a login, not a token)."""
    import requests

    password = (hub.state / "platform" / "admin_password").read_text().strip()
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    r = session.post(f"{hub.url}/hub/login", allow_redirects=False, timeout=30,
                     data={"username": "admin", "password": password,
                           "_xsrf": session.cookies.get("_xsrf")})  # fmt: skip
    assert r.status_code == 302, r.text
    page = session.get(f"{hub.url}/hub/dsplatform/usage", timeout=30)
    assert page.status_code == 200, page.text
    return page.text


# a notebook job that records when it ran and on which GPUs (span-<name>.json)
TIMED = (
    "import json, os, pathlib, time\n"
    "start = time.time(); time.sleep(seconds)\n"
    "pathlib.Path(f'span-{name}.json').write_text(json.dumps(\n"
    "    {'start': start, 'end': time.time(), 'cuda': os.environ['CUDA_VISIBLE_DEVICES']}))\n"
)
