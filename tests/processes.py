"""Child processes of the tests: start one with its log file, wait until it is ready, stop it.

Each runs in its own session (process group), its stdout and stderr appended to a log file
whose tail goes into the errors raised while waiting for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests


def launch(
    command: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session, stdout and stderr appended to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    log: Callable[[], str],
    *,
    interval: float = 0.2,
    not_ready: str = "did not answer within",
    on_timeout: Callable[[], None] | None = None,
) -> None:
    """Poll ``ready()`` every ``interval`` s until it is true.

    RuntimeError (exit code and ``log()``) if the process exits first; after ``timeout`` s,
    ``on_timeout()`` (e.g. stop it) then TimeoutError ("{what} {not_ready} {timeout}s" and
    ``log()``).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()}")
        if ready():
            return
        time.sleep(interval)
    if on_timeout is not None:
        on_timeout()
    raise TimeoutError(f"{what} {not_ready} {timeout}s:\n{log()}")


def answers(
    url: str,
    *,
    session: requests.Session | None = None,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """Whether GET ``url`` answers 200 (within 2 s)."""
    try:
        get = session.get if session is not None else requests.get
        return get(url, headers=headers, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def stop(
    proc: subprocess.Popen[bytes] | None,
    timeout: float,
    *,
    term_group: bool = True,
    kill_group: bool = True,
    term_signal: signal.Signals = signal.SIGTERM,
) -> None:
    """``term_signal`` (SIGTERM), wait up to ``timeout`` s, then SIGKILL; each to the process
    group or just the process. Nothing if there is no process or it has exited."""
    if proc is None or proc.poll() is not None:
        return
    if term_group:
        os.killpg(proc.pid, term_signal)
    else:
        proc.send_signal(term_signal)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        if kill_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


def log_tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of the log file ("" if there is none yet)."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
