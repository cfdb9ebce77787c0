"""``%dsdata`` and ``server_ext.dsdata`` in a real IPython kernel of this environment.

Nobody runs ``%load_ext server_ext``: the environment's ``ipython_kernel_config.json``
loads it into every kernel, as in a sandbox.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kernels import Kernel, running_kernel
from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def kernel(
    registry: Registry, workspace: Path, tmp_path: Path, dvc_site_cache: Path
) -> Iterator[Kernel]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DSDATA_CATALOG_URL", "DSPLATFORM_WORKSPACE", "DSDATA_LINK_TYPES")
    }
    env.update(
        DSDATA_REGISTRIES=registry.url,
        DSDATA_CACHE_DIR=os.fspath(tmp_path / "cache"),
        DVC_SITE_CACHE_DIR=os.fspath(dvc_site_cache),
        IPYTHONDIR=os.fspath(tmp_path / "ipython"),  # no user profile gets in the way
    )
    with running_kernel(env, workspace) as kernel:
        yield kernel


def test_kernel_is_this_environment_with_dsdata_preloaded(kernel: Kernel) -> None:
    out = kernel.run(
        "import sys, json; ip = get_ipython()\n"
        "print(json.dumps([sys.prefix, 'server_ext' in ip.extension_manager.loaded,"
        " 'dsdata' in ip.magics_manager.magics['line']]))"
    )
    prefix, loaded, has_magic = json.loads(out.stream())
    assert prefix == sys.prefix
    assert loaded is True and has_magic is True


def test_dsdata_magics_without_load_ext(kernel: Kernel, workspace: Path) -> None:
    listed = kernel.run("%dsdata list")
    assert listed.reply["content"]["status"] == "ok"
    [table] = listed.displays()
    text, html = table["text/plain"], table["text/html"]
    assert text.startswith("Datasets\ndataset  latest")
    assert "iris     v2.0.0          v1.0.0, v1.1.0, v2.0.0" in text  # no stages
    assert "Iris flowers, renamed columns" in text and "multi" in text
    assert html.startswith("<table class='dsdata'>")
    assert "<td style='text-align:left'>iris</td>" in html
    assert "<td style='text-align:left'>v1.0.0, v1.1.0, v2.0.0</td>" in html

    pulled = kernel.run("%dsdata pull iris@v1 -q")
    assert pulled.stream().startswith("iris@v1.1.0 -> data/iris (1 files, downloaded 2 objects, ")
    assert pulled.displays() == [] and pulled.stream("stderr") == ""  # -q: no bar
    assert md5_tree(workspace / "data" / "iris") == expected_tree(release("iris", "v1.1.0"))

    status = kernel.run("%dsdata status")
    [table] = status.displays()
    row = table["text/plain"].splitlines()[-1].split()
    assert row[:4] == ["data/iris", "iris", "v1.1.0", "unchanged"]
    assert "<td style='text-align:left'>unchanged</td>" in table["text/html"]

    (workspace / "data" / "iris" / "iris.csv").write_text("mine\n")
    status = kernel.run("%dsdata status")
    [table] = status.displays()
    assert table["text/plain"].splitlines()[-1].split()[3:5] == ["modified", "iris.csv"]
    conflict = kernel.run("%dsdata pull iris@v2 -q")
    assert "dsdata pull: " in conflict.stream() and "local changes" in conflict.stream()
    assert (workspace / "data" / "iris" / "iris.csv").read_text() == "mine\n"

    info = kernel.run("%dsdata info iris")
    [table] = info.displays()
    lines = table["text/plain"].splitlines()
    assert lines[0].startswith("iris: Iris flowers, renamed columns (source: ")
    cached = {line.split()[0]: line.split()[-1] for line in lines[3:]}
    assert cached == {"v2.0.0": "no", "v1.1.0": "yes", "v1.0.0": "no"}


def test_help_where_people_look_for_it(kernel: Kernel) -> None:
    """``%dsdata SUB --help``, ``%dsdata help SUB`` and ``%dsdata SUB?`` print that
    subcommand's options for every subcommand; ``%dsdata`` alone lists them."""
    from server_ext.magics import SUBCOMMANDS, _summary

    listing = kernel.run("%dsdata").stream()
    for command in SUBCOMMANDS:
        assert f"\n  {command} " in listing, command
    for command in SUBCOMMANDS:
        texts = [
            kernel.run(line).stream()
            for line in (f"%dsdata {command} --help", f"%dsdata help {command}",
                         f"%dsdata {command}?", f"%dsdata {command} -h")
        ]  # fmt: skip
        for text in texts:
            assert text.startswith(f"usage: %dsdata {command}"), (command, text[:200])
            assert _summary(command) in text and "Traceback" not in text, (command, text[:200])
        assert len(set(texts)) == 1, command
    assert "--message MESSAGE" in kernel.run("%dsdata commit?").stream()
    out = kernel.run("%dsdata commit")
    assert out.reply["content"]["status"] == "ok"
    assert out.stream() == (
        "dsdata commit: the following arguments are required: -m/--message\n"
        "(%dsdata commit --help for its options)\n"
    )
    assert kernel.run("%dsdata help nope").stream().startswith("Unknown %dsdata command 'nope'")


def test_bad_input_is_a_message_not_a_traceback(kernel: Kernel, workspace: Path) -> None:
    out = kernel.run("%dsdata pull ../x")
    assert out.reply["content"]["status"] == "ok"
    assert out.stream() == (
        "dsdata pull: Invalid dataset name '../x': use a GTO artifact name like 'iris' or "
        "'sub/dir:iris' (letters, digits, '-', '_' and '/')\n"
    )
    out = kernel.run("%dsdata pull iris -o ../outside")
    assert "outside the workspace" in out.stream()
    out = kernel.run("%dsdata pull penguins")
    assert "available: iris, multi" in out.stream()
    out = kernel.run("%dsdata pull iris@v9")
    assert "versions: v1.0.0, v1.1.0, v2.0.0" in out.stream()
    out = kernel.run("%dsdata frobnicate")
    assert "Unknown %dsdata command 'frobnicate'; commands: list, info, pull, status" in (
        out.stream()
    )
    assert os.listdir(workspace) == []
    assert not (workspace.parent / "outside").exists()


def test_help_shows_the_subcommands(kernel: Kernel) -> None:
    page = kernel.run("%dsdata?").page
    for usage in (
        "%dsdata list",
        "%dsdata info name",
        "%dsdata pull [-o OUTPUT] [--force] [-q] dataset",
        "%dsdata status",
        "%dsdata commit",
        "%dsdata log [-n N]",
        "%dsdata reproduce [-o OUTPUT] run_id",
        "%dsdata publish",
        "%dsdata models",
        "%dsdata sync",
    ):
        assert usage in page
    assert "replace local changes in the target" in page
    assert "_args" not in page  # the usage names the real subcommands
    assert kernel.run("%dsdata").stream().startswith("%dsdata SUBCOMMAND ...: datasets")


def test_python_api_returns_a_pull_result(kernel: Kernel, workspace: Path) -> None:
    out = kernel.run(
        "import json\n"
        "from server_ext import dsdata\n"
        "from server_ext.core import PullResult\n"
        "r = dsdata.pull('multi', 'data/m')\n"
        "print(json.dumps({'is_result': isinstance(r, PullResult), **r.as_dict()}))\n"
        "print(json.dumps([row['state'] for row in dsdata.status()]))"
    )
    result_line, status_line = out.stream().splitlines()
    result = json.loads(result_line)
    assert result["is_result"] is True
    assert (result["dataset"], result["version"], result["path"]) == ("multi", "v1.0.0", "data/m")
    assert json.loads(status_line) == ["unchanged"]
    assert md5_tree(workspace / "data" / "m") == expected_tree(release("multi", "v1.0.0"))
    assert (
        json.loads((workspace / ".dsdata" / "lineage.json").read_text())["pulls"][0]["requested"]
        == "multi"
    )


def test_pull_shows_a_progress_bar(kernel: Kernel, workspace: Path) -> None:
    out = kernel.run("%dsdata pull iris@v2")
    rel = release("iris", "v2.0.0")
    bars = [d for d in out.displays() if d.get("text/plain", "").startswith("pull iris@v2")]
    stderr = out.stream("stderr")
    assert bars or "pull iris@v2" in stderr
    if bars:  # tqdm.auto picked the ipywidgets bar: it must end full and green
        assert "application/vnd.jupyter.widget-view+json" in bars[0]
        states = out.comm_states()
        bar = next(s for s in states if s.get("_model_name") == "FloatProgressModel")
        assert bar["max"] == float(rel.size)
        assert {"value": float(rel.size)} in states
        assert {"bar_style": "success"} in states
        texts = [s["value"] for s in states if isinstance(s.get("value"), str)]
        assert any("2/2\u2007files,\u2007done" in t for t in texts)
    else:
        assert "100%" in stderr and "2/2 files, done" in stderr
    assert out.stream().startswith("iris@v2.0.0 -> data/iris (2 files, downloaded 3 objects")
    assert md5_tree(workspace / "data" / "iris") == expected_tree(rel)
