"""Experiments through the real hub: MLflow runs as a hub-managed service, a sandbox gets
its URL and the DVC remote, and ``%dsdata commit`` there records a run of the hub user."""

from __future__ import annotations

import json
import os
import pwd
import re

import pytest

from .hub import HubProcess
from .test_hub_spawn import run_in_kernel

pytestmark = pytest.mark.hub


def test_sandbox_commits_to_the_hub_managed_mlflow(clean_hub: HubProcess) -> None:
    hub = clean_hub
    url = hub.wait_mlflow()
    assert hub.session.get(f"{url}/health", timeout=5).text.strip() == "OK"

    assert hub.spawn("frank", "exp", {"profile": "cpu-small"}).status_code in (201, 202)
    hub.wait_ready("frank", "exp")
    env = json.loads(
        run_in_kernel(
            hub,
            "frank",
            "exp",
            "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
            "['MLFLOW_TRACKING_URI', 'DSDATA_DVC_REMOTE', 'JUPYTERHUB_USER']}))",
        )
    )
    assert env["MLFLOW_TRACKING_URI"] == url
    remote = hub.state / "platform" / "dvc-remote" / "frank"  # one per user
    assert env["DSDATA_DVC_REMOTE"] == str(remote)
    assert env["JUPYTERHUB_USER"] == "frank"

    out = run_in_kernel(
        hub,
        "frank",
        "exp",
        "import pathlib\n"
        "pathlib.Path('train.py').write_text('print(1)\\n')\n"
        "pathlib.Path('model').mkdir(exist_ok=True)\n"
        "pathlib.Path('model/w.bin').write_bytes(b'hub weights')\n"
        '%dsdata commit -m "from the hub" --param lr=0.1 --metric auc=0.9 --outputs model\n',
    )
    match = re.search(r"committed ([0-9a-f]{10}) \(run ([0-9a-f]{32})\) in dsdata/frank/", out)
    assert match, out
    sha10, run_id = match.groups()

    from mlflow import MlflowClient

    with hub.mlflow_as():
        run = MlflowClient(url).get_run(run_id)
    assert run.data.tags["mlflow.user"] == "frank"
    assert run.data.tags["dsdata.profile"] == "cpu-small"
    assert run.data.tags["dsdata.git_sha"].startswith(sha10)
    assert run.data.tags["dsdata.dataset.iris"].startswith("v1.")  # preloaded by the profile
    assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"auc": 0.9}
    assert (remote / "files" / "md5").is_dir()
    if os.geteuid() == 0:  # frank's own account owns it, no one else can enter it
        owner = pwd.getpwuid(remote.stat().st_uid).pw_name
        assert (owner, remote.stat().st_mode & 0o777) == ("dsp-frank", 0o700)
