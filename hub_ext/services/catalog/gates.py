"""The gates a promotion passes, computed when it is requested and shown to the approver
(pure functions on plain records; the flow in :mod:`hub_ext.services.catalog.promotions`).

* ``signature``: the candidate accepts the inputs the current version accepts (every input
  column of the current version, by name and type) and gives outputs of the same types;
* ``metric``: the admin's ``gate_metric`` of the candidate's training run is not worse than
  the current version's (``higher`` or ``lower`` is better);
* ``lineage``: the candidate names its code (``dsdata.git_sha``) and data
  (``dsdata.dataset.*``).

Without a current version (a first promotion) the comparisons pass, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """What the gates look at of one model version."""

    version: str
    signature: Mapping[str, Any] | None  # {"inputs": [{"name", "type"}], "outputs": [...]}
    metrics: Mapping[str, float]  # of its training run
    tags: Mapping[str, str]  # the version's tags (dsdata.git_sha, dsdata.dataset.*)


def _columns(side: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(c.get("name")): str(c.get("type")) for c in side or []}


def signature_gate(candidate: Candidate, current: Candidate | None) -> Gate:
    if candidate.signature is None:
        return Gate("signature", False, f"version {candidate.version} has no signature")
    if current is None or current.signature is None:
        return Gate("signature", True, "no current version with a signature to compare")
    mine, theirs = (
        _columns(candidate.signature.get("inputs")),
        _columns(current.signature.get("inputs")),
    )
    missing = sorted(set(theirs) - set(mine))
    changed = sorted(n for n in set(theirs) & set(mine) if theirs[n] != mine[n])
    if missing or changed:
        parts = []
        if missing:
            parts.append(f"missing inputs {', '.join(missing)}")
        if changed:
            parts.append(
                "changed input types " + ", ".join(f"{n} {theirs[n]}->{mine[n]}" for n in changed)
            )
        return Gate("signature", False, f"incompatible with version {current.version}: " +
                    "; ".join(parts))  # fmt: skip
    out_mine = [c.get("type") for c in candidate.signature.get("outputs") or []]
    out_theirs = [c.get("type") for c in current.signature.get("outputs") or []]
    if out_theirs and out_mine != out_theirs:
        return Gate("signature", False, f"outputs {out_mine} differ from {out_theirs}")
    return Gate("signature", True, f"accepts the inputs of version {current.version}")


def metric_gate(
    candidate: Candidate, current: Candidate | None, metric: str, direction: str
) -> Gate | None:
    if not metric:
        return None
    mine = candidate.metrics.get(metric)
    if mine is None:
        return Gate("metric", False, f"version {candidate.version}'s run has no metric {metric}")
    if current is None or metric not in current.metrics:
        return Gate("metric", True, f"{metric} = {mine:g}; nothing to compare it with")
    theirs = current.metrics[metric]
    better_or_equal = mine >= theirs if direction == "higher" else mine <= theirs
    verdict = "not worse than" if better_or_equal else "worse than"
    return Gate(
        "metric",
        better_or_equal,
        f"{metric} = {mine:g}, {verdict} version {current.version}'s {theirs:g} "
        f"({direction} is better)",
    )


def lineage_gate(candidate: Candidate) -> Gate:
    sha = candidate.tags.get("dsdata.git_sha")
    datasets = sorted(k[len("dsdata.dataset.") :] for k in candidate.tags
                      if k.startswith("dsdata.dataset."))  # fmt: skip
    missing = [what for what, present in (("git sha", sha), ("dataset versions", datasets))
               if not present]  # fmt: skip
    if missing:
        return Gate("lineage", False, f"version {candidate.version} lacks {' and '.join(missing)}")
    return Gate("lineage", True, f"code {str(sha)[:10]}, data {', '.join(datasets)}")


def gates(
    candidate: Candidate, current: Candidate | None, metric: str = "", direction: str = "higher"
) -> list[Gate]:
    """All gates of promoting ``candidate`` over ``current`` (None: nothing promoted yet)."""
    found = [signature_gate(candidate, current), lineage_gate(candidate)]
    metric_result = metric_gate(candidate, current, metric, direction)
    if metric_result is not None:
        found.insert(1, metric_result)
    return found
