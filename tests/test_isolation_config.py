"""Local mode's start-up checks: as root the hub refuses what sandbox accounts could not use
(naming the key and the path) and warns where the admin's settings leave a gap; not as root
it says loudly that sandboxes are not isolated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from hub_ext.setup import configure

from .host import missing
from .hub import traversable

REPO = Path(__file__).resolve().parent.parent


def local_config(tmp_path: Path, **spawner: object) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.JupyterHub.db_url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    c.ProfileSpawner.profiles = [{"slug": "a"}]
    for key, value in spawner.items():
        setattr(c.LocalProfileSpawner, key, value)
    return c


def root_only(tmp_path: Path | None = None) -> None:
    if os.geteuid() != 0:
        missing("the isolation checks run when the hub is root")
    if tmp_path is not None:
        traversable(tmp_path)  # so what blocks is what the test closes


def test_workspaces_others_cannot_reach_stop_the_hub(tmp_path: Path, capsys) -> None:
    root_only(tmp_path)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    c = local_config(tmp_path, home_dir_template=str(closed / "users" / "{username}"))
    with pytest.raises(SystemExit):
        configure(c)
    err = capsys.readouterr().err
    assert "c.LocalProfileSpawner.home_dir_template: sandbox accounts cannot reach" in err
    assert f"{closed} (0o700) is not traversable" in err


def test_a_python_other_accounts_cannot_run_stops_the_hub(tmp_path: Path, capsys) -> None:
    root_only()
    closed = tmp_path / "closed"
    (closed / "bin").mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "bin" / "python").symlink_to(sys.executable)
    c = local_config(tmp_path)
    c.ProfileSpawner.toolchains = {"private": {"local_python": str(closed / "bin" / "python")}}
    with pytest.raises(SystemExit):
        configure(c)
    err = capsys.readouterr().err
    assert "c.ProfileSpawner.toolchains['private']:" in err
    assert "sandbox accounts cannot run" in err and "Permission denied" in err


@pytest.mark.parametrize("template", ["dsp", "9{username}", "{username}" + "x" * 40])
def test_a_bad_account_template_stops_the_hub(tmp_path: Path, template: str, capsys) -> None:
    root_only()
    with pytest.raises(SystemExit):
        configure(local_config(tmp_path, account_template=template))
    assert "c.LocalProfileSpawner.account_template:" in capsys.readouterr().err


def test_gaps_in_the_admins_settings_are_named_at_start_up(tmp_path: Path, capsys) -> None:
    root_only(tmp_path)  # the registry is reachable: only then is it a gap
    registry = tmp_path / "public-registry"
    registry.mkdir(mode=0o755)
    c = local_config(tmp_path)
    c.DatasetCatalog.registries = [str(registry)]
    c.ProfileSpawner.dvc_remote = str(tmp_path / "shared-remote")
    configure(c)
    err = capsys.readouterr().err
    assert f"sandbox accounts can read the registry {registry} directly" in err
    assert "is shared by every sandbox" in err
    assert "without the catalog service" in err


def test_a_hub_that_is_not_root_says_sandboxes_are_not_isolated(tmp_path: Path) -> None:
    root_only()  # to become someone else
    code = (
        "from traitlets.config import Config\n"
        "from hub_ext.spawners.isolation import wire\n"
        "from hub_ext.spawners.local import LocalProfileSpawner\n"
        "wire(Config(), LocalProfileSpawner)\n"
    )

    def nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    proc = subprocess.run([sys.executable, "-c", code], preexec_fn=nobody, cwd="/",
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                               "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "sandboxes are NOT isolated from\n  each other" in proc.stderr
    assert "run the hub as root" in proc.stderr
