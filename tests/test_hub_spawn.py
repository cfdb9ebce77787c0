"""A user's story through the real hub: spawn inside quota, refusals, concurrent spawns."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty

import pytest
from jupyter_client.blocking import BlockingKernelClient

from .hub import HubProcess

pytestmark = pytest.mark.hub


def wait_for_kernel(client: BlockingKernelClient, timeout: float) -> None:
    """Until the kernel answers ``kernel_info`` and its IOPub reaches us.

    Not ``client.wait_for_ready``: it reads the first missed heartbeat (1 s) as a dead
    kernel, and a sandbox's kernel on a busy machine may take longer to bind its sockets.
    """
    deadline = time.monotonic() + timeout
    while True:
        client.kernel_info()
        try:
            if client.get_shell_msg(timeout=1)["msg_type"] == "kernel_info_reply":
                client.get_iopub_msg(timeout=1)  # subscribed: the request's status message
                break
        except Empty:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel did not answer within {timeout} s")
    while True:  # what the requests published
        try:
            client.get_iopub_msg(timeout=0.2)
        except Empty:
            break


def run_in_kernel(
    hub: HubProcess,
    user: str,
    server: str,
    code: str,
    timeout: float = 60,
    connection_file: Callable[[str], Path | None] | None = None,
) -> str:
    """Start a kernel in the user's real server (REST) and run ``code`` in it (at most
    ``timeout`` seconds). ``connection_file(kernel_id)`` finds the kernel's connection
    file where the server is not a local one (a pod's workspace)."""
    token = hub.token_for(user)
    base = f"{hub.url}/user/{user}/{server}/" if server else f"{hub.url}/user/{user}/"
    headers = {"Authorization": f"token {token}"}
    r = hub.session.post(f"{base}api/kernels", headers=headers, json={"name": "python3"})
    assert r.status_code == 201, r.text
    kernel_id = r.json()["id"]
    try:
        runtime = hub.state / "platform" / "users" / user / ".local/share/jupyter/runtime"
        local = runtime / f"kernel-{kernel_id}.json"
        find = connection_file or (lambda _: local if local.exists() else None)
        deadline = time.monotonic() + 30
        while (connection := find(kernel_id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        connection = connection or local
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        try:
            wait_for_kernel(client, timeout=60)
            out: list[str] = []
            reply = client.execute_interactive(
                code,
                timeout=timeout,
                output_hook=lambda m: out.append(m["content"].get("text", "")),
            )
            if reply["content"]["status"] != "ok":  # the traceback, readable
                trace = "\n".join(reply["content"].get("traceback", []))
                raise AssertionError(re.sub(r"\x1b\[[0-9;]*m", "", trace))
            return "".join(out)
        finally:
            client.stop_channels()
    finally:
        hub.session.delete(f"{base}api/kernels/{kernel_id}", headers=headers)


def test_gpu_spawn_inside_quota_sees_its_devices(clean_hub: HubProcess) -> None:
    hub = clean_hub
    r = hub.spawn("alice", "train", {"profile": "gpu-a100", "gpus": 2, "cpu": 2, "memory": "2G"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "train")
    env = json.loads(
        run_in_kernel(
            hub,
            "alice",
            "train",
            "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
            "['CUDA_VISIBLE_DEVICES', 'DSPLATFORM_PROFILE', 'DSPLATFORM_RESOURCES', "
            "'PROFILE_ENV', 'TOOLCHAIN', 'DSPLATFORM_LIMITS']}))",
        )
    )
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["DSPLATFORM_PROFILE"] == "gpu-a100"
    assert json.loads(env["DSPLATFORM_RESOURCES"]) == {
        "cpu": 2.0, "memory": "2G", "gpus": 2, "gpu_type": "nvidia-a100", "disk": "10G",
    }  # fmt: skip
    assert env["PROFILE_ENV"] == "gpu" and env["TOOLCHAIN"] == "scipy"
    # root with this machine's writable cgroup v1 controllers: one cgroup per sandbox
    expected = "cgroup-v1" if os.geteuid() == 0 else "rlimit"
    assert env["DSPLATFORM_LIMITS"] in (expected, "cgroup-v2")

    usage = hub.usage("alice")
    assert usage["usage"]["gpus"] == 2 and usage["usage"]["servers"] == 1
    assert usage["pools"]["nvidia-a100"] == {"total": 4, "used": 2, "free": 2}
    assert usage["profiles"] == ["cpu-small", "gpu-a100"]

    # a second GPU server of the same user gets the next free device
    r = hub.spawn("alice", "second", {"profile": "gpu-a100", "gpus": 1})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice", "second")
    assert (
        run_in_kernel(
            hub, "alice", "second", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"
        ).strip()
        == "2"
    )

    # stopping releases exactly what was held
    hub.stop_server("alice", "train")
    usage = hub.usage("alice")
    assert usage["usage"]["gpus"] == 1
    assert usage["pools"]["nvidia-a100"]["used"] == 1


REFUSALS = [
    # (user, options, status, message pattern)
    ("dave", {"profile": "gpu-a100"}, 403,
     r"Profile 'gpu-a100' is limited to groups ml-research, storm; you are in no groups"),
    ("dave", {"profile": "nope"}, 400, r"Unknown profile 'nope'; profiles you may start: cpu-small"),
    ("dave", {"profile": "cpu-small", "cpu": 3}, 400,
     r"cpu 3 is outside profile 'cpu-small': cpu is from 0.5 to 2"),
    ("dave", {"profile": "cpu-small", "cpu": "lots"}, 400, r"Option 'cpu' must be a number"),
    ("dave", {"profile": "cpu-small", "image": "evil"}, 400, r"Unknown option 'image'"),
    ("dave", {"profile": "cpu-small", "memory": "-1G"}, 400, r"Option 'memory'"),
    ("alice", {"profile": "gpu-a100", "gpus": 4}, 403,
     r"GPU quota exceeded: ml-research allows 3 GPUs per user; running 0 \+ requested 4 = 4"),
]  # fmt: skip


@pytest.mark.parametrize(("user", "options", "status", "message"), REFUSALS)
def test_refusals_via_rest(
    clean_hub: HubProcess, user: str, options: dict, status: int, message: str
) -> None:
    r = clean_hub.spawn(user, "", options)
    assert r.status_code == status, r.text
    assert re.search(message, r.json()["message"]), r.json()
    assert clean_hub.server_model(user, "") is None  # nothing started, nothing held
    assert clean_hub.usage(user)["usage"]["servers"] == 0


def login(hub: HubProcess, user: str):  # type: ignore[no-untyped-def]
    import requests

    password = (hub.state / "platform" / "user_password").read_text().strip()
    s = requests.Session()
    r = s.get(f"{hub.url}/hub/login")
    xsrf = s.cookies.get("_xsrf")
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": password, "_xsrf": xsrf},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text
    return s


def test_form_shows_only_allowed_profiles_and_numbers(clean_hub: HubProcess) -> None:
    s = login(clean_hub, "alice")
    page = s.get(f"{clean_hub.url}/hub/spawn/alice/formcheck").text
    assert 'data-profile="cpu-small"' in page and 'data-profile="gpu-a100"' in page
    assert re.search(r'data-quota="gpus"><td>GPUs</td>\s*<td>3</td>', page)
    assert re.search(r'data-pool="nvidia-a100">nvidia-a100: 4 of 4', page)
    s2 = login(clean_hub, "erin")
    page = s2.get(f"{clean_hub.url}/hub/spawn/erin/formcheck").text
    assert 'data-profile="cpu-small"' in page and 'data-profile="gpu-a100"' not in page
    # shown as unavailable, with the groups that grant it; no free GPUs for a 0-GPU quota
    assert 'data-unavailable-profile="gpu-a100"' in page
    assert "unavailable: for members of ml-research, storm" in page
    assert (
        "Free GPUs" not in page and "Free GPUs" in s.get(f"{clean_hub.url}/hub/spawn/alice/x").text
    )


@pytest.mark.parametrize(
    ("user", "form", "status", "message"),
    [
        ("erin", {"profile": "gpu-a100"}, 403, "Profile &#39;gpu-a100&#39; is limited to groups"),
        ("erin", {"profile": "cpu-small", "cpu-small.cpu": "5"}, 400,
         "cpu 5 is outside profile &#39;cpu-small&#39;: cpu is from 0.5 to 2"),
        ("erin", {"profile": "cpu-small", "cpu-small.cpu": "abc"}, 400, "Option &#39;cpu&#39; must be a number"),
        ("alice", {"profile": "gpu-a100", "gpu-a100.gpus": "4"}, 403,
         "GPU quota exceeded: ml-research allows 3 GPUs per user; running 0 + requested 4 = 4"),
    ],
)  # fmt: skip
def test_refusals_via_form(
    clean_hub: HubProcess, user: str, form: dict, status: int, message: str
) -> None:
    s = login(clean_hub, user)
    url = f"{clean_hub.url}/hub/spawn/{user}/viaform"
    s.get(url)
    r = s.post(url, data={**form, "_xsrf": s.cookies.get("_xsrf")}, allow_redirects=False)
    assert r.status_code == status, r.text[:2000]
    assert message in r.text
    assert "SpawnException" not in r.text  # a sentence, not the exception's repr
    assert clean_hub.server_model(user, "viaform") is None


def test_form_spawn_inside_quota(clean_hub: HubProcess) -> None:
    s = login(clean_hub, "erin")
    url = f"{clean_hub.url}/hub/spawn/erin/fromform"
    s.get(url)
    r = s.post(
        url,
        data={"profile": "cpu-small", "cpu-small.cpu": "0.5", "cpu-small.memory": "1G",
              "_xsrf": s.cookies.get("_xsrf")},
        allow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 302, r.text[:2000]
    model = clean_hub.wait_ready("erin", "fromform")
    assert model["user_options"] == {"profile": "cpu-small", "cpu": 0.5, "memory": "1G"}
    assert clean_hub.usage("erin")["usage"] == {
        "servers": 1, "cpu": 0.5, "memory": "1G", "gpus": 0, "gpu_hours_this_week": 0.0,
    }  # fmt: skip


def test_concurrent_spawns_never_overshoot_the_pool(clean_hub: HubProcess) -> None:
    hub = clean_hub
    users = [f"storm{i:02d}" for i in range(32)]
    for user in users:  # tokens first, so the storm is only spawn requests
        hub.token_for(user)

    def spawn(user: str) -> int:
        return hub.spawn(
            user,
            "",
            {"profile": "gpu-a100", "gpus": 1},
        ).status_code

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        codes = list(pool.map(spawn, users))
    started = [u for u, code in zip(users, codes, strict=True) if code in (201, 202)]
    assert len(started) == 4, codes
    assert sorted(set(codes) - {201, 202}) == [503], codes
    for user in started:
        hub.wait_ready(user)
    assert hub.usage("storm00")["pools"]["nvidia-a100"] == {"total": 4, "used": 4, "free": 0}
    devices = sorted(
        Path(f"/proc/{hub.server_state(u)['pid']}/environ")
        .read_bytes()
        .split(b"CUDA_VISIBLE_DEVICES=")[1]
        .split(b"\0")[0]
        .decode()
        for u in started
    )
    assert devices == ["0", "1", "2", "3"]
