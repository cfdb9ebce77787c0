"""Packaging of the JupyterLab extension: prebuilt in the wheel next to the server config, and
installed and enabled in this (editable) environment, as ``jupyter`` itself reports.

``pip wheel`` runs the real build (hatch-jupyter-builder -> ``npm run build:prod`` ->
jupyter-builder) in an isolated build environment; it needs PyPI for the build requirements.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .hub import REPO

NAME = "dsplatform-labextension"
INSTALLED = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / NAME
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter(*args: str) -> str:
    """stdout + stderr of ``jupyter ARGS`` of this environment, without colours."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return ANSI.sub("", proc.stdout + proc.stderr)


def test_labextension_and_server_extension_are_enabled() -> None:
    labextensions = jupyter("labextension", "list")
    assert re.search(
        rf"^\s+{NAME} v0\.1\.0 enabled OK \(python, dsplatform\)$", labextensions, re.M
    ), labextensions
    server = jupyter("server", "extension", "list")
    assert re.search(r"^\s+server_ext enabled$", server, re.M), server
    assert re.search(r"^\s+server_ext 0\.1\.0 OK$", server, re.M), server


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(REPO), "-w", str(out)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [built] = out.glob("dsplatform-*.whl")
    return built


def test_wheel_holds_the_prebuilt_extension_and_the_server_config(wheel: Path) -> None:
    data = "dsplatform-0.1.0.data/data/"
    ext = f"{data}share/jupyter/labextensions/{NAME}/"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        package = json.loads(archive.read(f"{ext}package.json"))
        install = json.loads(archive.read(f"{ext}install.json"))
        schema = json.loads(archive.read(f"{ext}schemas/{NAME}/plugin.json"))
        server_config = json.loads(
            archive.read(f"{data}etc/jupyter/jupyter_server_config.d/server_ext.json")
        )
    load = package["jupyterlab"]["_build"]["load"]
    assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", load)
    assert f"{ext}{load}" in names and f"{ext}static/style.js" in names
    assert install["packageName"] == "dsplatform"
    assert set(schema["properties"]) == {"pullFolder", "runsShown", "refreshInterval"}
    assert server_config == {"ServerApp": {"jpserver_extensions": {"server_ext": True}}}
    assert f"{data}etc/ipython/ipython_kernel_config.json" in names
    assert not [n for n in names if "node_modules" in n or n.endswith(".ts")]

    # the extension installed in this environment is the build of the current sources
    # (the editable install copies it; scripts/bootstrap reinstalls when sources change)
    installed = json.loads((INSTALLED / "package.json").read_text())
    assert installed["jupyterlab"]["_build"]["load"] == load, (
        "the installed labextension is stale: run scripts/bootstrap"
    )
