"""Pull a profile's datasets before the sandbox opens: ``python -m server_ext.preload``.

Run by the spawner in the user's workspace with the sandbox's environment (local mode:
before the server process starts; Kubernetes: as an init container). Datasets come from
the arguments or ``DSPLATFORM_DATASETS`` (comma-separated ``NAME@VERSION``). Each start
pulls again (from the shared cache: a link or copy, no download); a copy the user changed
is kept, and the spawn goes on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .core import DataService
from .errors import DsdataError


def preload(refs: list[str], root: Path) -> int:
    service = DataService(root=root)
    current = service.lineage.current()
    failures = 0
    for ref in refs:
        name = ref.partition("@")[0]
        record = current.get(f"data/{name}")
        try:
            result = service.pull(ref)
        except DsdataError as e:
            if record is not None and "local changes" in e.message:
                print(f"preload: kept your changed copy of {name} ({e.message})", flush=True)
                continue
            print(f"preload: {ref}: {e.message}", file=sys.stderr, flush=True)
            failures += 1
            continue
        print(f"preload: {result.dataset}@{result.version} -> {result.path}", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server_ext.preload", description=__doc__)
    parser.add_argument("datasets", nargs="*", help="NAME@VERSION (default: $DSPLATFORM_DATASETS)")
    parser.add_argument("--root", default=".", help="the workspace (default: current directory)")
    args = parser.parse_args(argv)
    refs = args.datasets or [
        d.strip() for d in os.environ.get("DSPLATFORM_DATASETS", "").split(",") if d.strip()
    ]
    if not refs:
        return 0
    return preload(refs, Path(args.root).resolve())


if __name__ == "__main__":
    sys.exit(main())
