"""A real IPython kernel of this environment for the tests: start one, run code, read what
it printed, displayed and paged."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


@dataclass
class Outputs:
    """What one execution produced on iopub, and its reply."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def displays(self) -> list[dict[str, Any]]:
        return [m["content"]["data"] for m in self.messages if m["msg_type"] == "display_data"]

    def comm_states(self) -> list[dict[str, Any]]:
        return [
            m["content"]["data"].get("state", {})
            for m in self.messages
            if m["msg_type"] in ("comm_open", "comm_msg")
        ]

    @property
    def page(self) -> str:
        return "".join(p["data"]["text/plain"] for p in self.reply["content"]["payload"])


class Kernel:
    def __init__(self, client: BlockingKernelClient, manager: KernelManager | None = None) -> None:
        self.client = client
        self.manager = manager

    def shutdown(self) -> None:
        """Shut the kernel down as JupyterLab's "Shut Down Kernel" does (a request)."""
        assert self.manager is not None
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)

    def run(self, code: str, timeout: float = 120) -> Outputs:
        messages: list[dict[str, Any]] = []
        reply = self.client.execute_interactive(code, output_hook=messages.append, timeout=timeout)
        return Outputs(reply, messages)


@contextmanager
def running_kernel(env: Mapping[str, str], cwd: Path) -> Iterator[Kernel]:
    """A python3 kernel with ``env`` in ``cwd``, ready; shut down on exit."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=dict(env), cwd=os.fspath(cwd))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Kernel(client, manager)
    finally:
        client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
