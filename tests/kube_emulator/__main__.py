"""``python -m tests.kube_emulator``: serve an emulated cluster until SIGINT/SIGTERM.

It writes a kubeconfig pointing at itself (``--kubeconfig``), then serves. One node by
default (``--node-cpu/--node-memory/--node-gpus``, ``--node-label``, ``--node-taint``), or
the nodes of a JSON file (``--nodes``: a list of ``{"name", "allocatable", "labels",
"taints"}``). On exit, every pod's processes are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path

from . import Config, NodeSpec, start_server, write_kubeconfig
from .cluster import Cluster


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.kube_emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig file to write")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespaces that exist (default: default); the first is the kubeconfig's",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where volumes, pod files and logs live (default: a temporary dir)",
    )
    p.add_argument("--node-cpu", default="8", help="allocatable CPUs of the node (default 8)")
    p.add_argument("--node-memory", default="32Gi", help="allocatable memory (default 32Gi)")
    p.add_argument("--node-gpus", type=int, default=0, help="allocatable GPUs (default 0)")
    p.add_argument(
        "--gpu-resource",
        default="nvidia.com/gpu",
        help="GPU resource name (default nvidia.com/gpu)",
    )
    p.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--node-taint", action="append", default=[], metavar="KEY[=VALUE]:EFFECT")
    p.add_argument(
        "--nodes", type=Path, help="JSON file with a list of nodes (replaces the --node-* options)"
    )
    p.add_argument(
        "--unpullable",
        action="append",
        default=[],
        metavar="PATTERN",
        help="image names (fnmatch patterns) whose pull fails; hosts under .invalid always fail",
    )
    p.add_argument(
        "--pod-subnet",
        default="",
        help="e.g. 127.30.1: pods get 127.30.1.2, .3, ... (default: random 127.x.y)",
    )
    p.add_argument(
        "--pull-backoff", type=float, default=1.0, help="seconds between pull retries (doubling)"
    )
    p.add_argument(
        "--restart-backoff",
        type=float,
        default=2.0,
        help="seconds before a container restart (doubling)",
    )
    return p.parse_args(argv)


def nodes_from(args: argparse.Namespace) -> list[NodeSpec]:
    if args.nodes:
        return [NodeSpec.from_dict(n) for n in json.loads(args.nodes.read_text())]
    allocatable = {"cpu": args.node_cpu, "memory": args.node_memory}
    if args.node_gpus:
        allocatable[args.gpu_resource] = str(args.node_gpus)
    taints = []
    for text in args.node_taint:
        key_value, _, effect = text.rpartition(":")
        key, _, value = key_value.partition("=")
        taints.append(
            {"key": key, "value": value, "effect": effect}
            if value
            else {"key": key, "effect": effect}
        )
    labels = dict(label.split("=", 1) for label in args.node_label)
    return [
        NodeSpec.from_dict(
            {"name": "node-1", "allocatable": allocatable, "labels": labels, "taints": taints}
        )
    ]


async def serve(args: argparse.Namespace) -> None:
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="kube-emulator-"))
    namespaces = args.namespace or ["default"]
    config = Config(
        state_dir=state.resolve(),
        nodes=nodes_from(args),
        namespaces=namespaces,
        unpullable=args.unpullable,
        pod_subnet=args.pod_subnet,
        pull_backoff=args.pull_backoff,
        restart_backoff=args.restart_backoff,
    )
    cluster = Cluster(config)
    runner, port = await start_server(cluster, args.host, args.port)
    server = f"http://{args.host}:{port}"
    write_kubeconfig(args.kubeconfig, server, namespaces[0])
    print(
        f"kube emulator: serving {server} (kubeconfig {args.kubeconfig}, pods on {cluster.subnet}.0/24, "
        f"state {state})",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("kube emulator: stopping pods", file=sys.stderr, flush=True)
    await cluster.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
