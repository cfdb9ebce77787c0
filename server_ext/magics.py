"""``%dsdata``: the notebook front of the data core (``%load_ext server_ext``)."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import dsdata
from .display import datasets_table, info_table, status_table
from .errors import DsdataError
from .progress import PullBar


@magic_arguments("dsdata list")
def _list_args(line: str) -> None:
    """%dsdata list: the datasets you may pull, with their versions."""


@magic_arguments("dsdata info")
@argument("name", help="dataset name")
def _info_args(line: str) -> None:
    """%dsdata info NAME: description, versions, sizes, content hashes, source."""


@magic_arguments("dsdata pull")
@argument("dataset", help="NAME or NAME@VERSION (v2 = newest v2.*; default: latest)")
@argument("-o", "--output", default=None, help="target directory (default: data/NAME)")
@argument("--force", action="store_true", help="replace local changes in the target")
@argument("-q", "--quiet", action="store_true", help="no progress bar")
def _pull_args(line: str) -> None:
    """%dsdata pull NAME[@VERSION] [-o PATH] [--force]: fetch a dataset version atomically."""


@magic_arguments("dsdata status")
def _status_args(line: str) -> None:
    """%dsdata status: what was pulled where, and whether it changed since."""


SUBCOMMANDS: dict[str, Callable[[str], None]] = {
    "list": _list_args,
    "info": _info_args,
    "pull": _pull_args,
    "status": _status_args,
}


def _usage() -> str:
    parts = ["Datasets from the platform's DVC registries, versioned and reproducible.\n"]
    for func in SUBCOMMANDS.values():
        parser = func.parser  # type: ignore[attr-defined]
        parts.append(parser.format_help().replace("usage: ", "%").rstrip() + "\n")
    return "\n".join(parts)


@magics_class
class DsdataMagics(Magics):
    """The ``%dsdata`` line magic."""

    @line_magic
    def dsdata(self, line: str) -> None:
        words = shlex.split(line)
        if not words or words[0] in ("-h", "--help", "help"):
            print(_usage())
            return None
        command, rest = words[0], line.strip()[len(words[0]) :]
        if command not in SUBCOMMANDS:
            print(f"Unknown %dsdata command {command!r}; commands: {', '.join(SUBCOMMANDS)}")
            return None
        try:
            args = parse_argstring(SUBCOMMANDS[command], rest)
        except (SystemExit, argparse.ArgumentError) as e:  # argparse already printed why
            if isinstance(e, argparse.ArgumentError):
                print(e)
            return None
        try:
            return getattr(self, f"_{command}")(args)
        except DsdataError as e:
            print(f"dsdata {command}: {e.message}")
            return None

    def _list(self, args: argparse.Namespace) -> None:
        display(datasets_table(dsdata.list_datasets()))

    def _info(self, args: argparse.Namespace) -> None:
        display(info_table(dsdata.info(args.name)))

    def _pull(self, args: argparse.Namespace) -> None:
        bar = PullBar(disable=args.quiet)
        try:
            result = dsdata.pull(args.dataset, args.output, force=args.force, on_progress=bar)
        finally:
            bar.close()
        how = (
            "from the shared cache"
            if result.from_cache
            else f"downloaded {result.downloaded_objects} objects"
        )
        print(
            f"{result.dataset}@{result.version} -> {result.path} "
            f"({result.files} files, {how}, {result.seconds:.2f}s; rev {result.rev[:10]})"
        )

    def _status(self, args: argparse.Namespace) -> None:
        display(status_table(dsdata.status()))


DsdataMagics.dsdata.__doc__ = _usage()
