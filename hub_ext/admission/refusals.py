"""Why a spawn is refused: one typed exception, mapped to HTTP in exactly one place.

Domain code (options, quota, reservations) raises :class:`Refusal`; the spawner turns it
into JupyterHub's ``SpawnException`` with the same status, reason label and message, so the
REST API and the spawn form answer identically.
"""

from __future__ import annotations

from typing import Literal

Reason = Literal["invalid", "forbidden", "quota", "capacity"]

STATUS: dict[str, int] = {"invalid": 400, "forbidden": 403, "quota": 403, "capacity": 503}


class Refusal(Exception):
    """A spawn request that policy refuses; ``reason`` is one of docs/contract.md's labels."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def status_code(self) -> int:
        return STATUS[self.reason]

    def __repr__(self) -> str:
        return f"Refusal({self.reason!r}, {self.message!r})"
