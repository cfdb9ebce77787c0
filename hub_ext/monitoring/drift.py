"""Input drift: a model version's recent inputs against its reference data, per feature.

Pure functions over plain values: numbers are compared with the two-sample
Kolmogorov-Smirnov test, categories with a chi-squared test of the 2 x k contingency table
(both scipy's); a feature drifts when its p-value is below the admin's threshold
(``c.PlatformMonitoring.drift_p_value``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hub_ext.monitoring.window import Row


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test: ``ks`` (numbers), ``chi2`` (categories) or ``none`` (why: note)."""

    feature: str
    test: str
    statistic: float | None
    p_value: float | None
    drift: bool
    window: int  # values of the feature in the window
    reference: int  # values of the feature in the reference
    note: str = ""


@dataclass(frozen=True)
class Reference:
    """Where the reference data came from. ``source`` is ``lineage`` (the training run's
    dataset version) or ``input_example`` (the model's logged example: a weak reference)."""

    source: str
    dataset: str | None = None
    version: str | None = None
    path: str | None = None
    weak: bool = False
    note: str = ""


@dataclass(frozen=True)
class DriftReport:
    """``GET …/drift``: per-feature tests and the overall verdict (None: not enough data)."""

    model: str
    version: str
    window: int
    min_window: int
    p_value_threshold: float
    drift: bool | None
    features: tuple[FeatureDrift, ...] = field(default_factory=tuple)
    reference: Reference | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        return data


def _clean(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def feature_drift(
    feature: str,
    reference: Sequence[Any],
    window: Sequence[Any],
    p_value_threshold: float,
    min_window: int,
) -> FeatureDrift:
    """Test one feature's window against its reference values."""
    from scipy import stats

    ref, win = _clean(reference), _clean(window)
    if len(win) < min_window:
        return FeatureDrift(feature, "none", None, None, False, len(win), len(ref),
                            f"{len(win)} value(s) in the window; {min_window} needed")  # fmt: skip
    if len(ref) < 2:
        return FeatureDrift(feature, "none", None, None, False, len(win), len(ref),
                            "the reference has fewer than 2 values")  # fmt: skip
    if _numeric(ref) and _numeric(win):
        result = stats.ks_2samp(ref, win)
        statistic, p_value, test = float(result.statistic), float(result.pvalue), "ks"
    else:
        ref_counts, win_counts = Counter(map(str, ref)), Counter(map(str, win))
        categories = sorted(set(ref_counts) | set(win_counts))
        if len(categories) < 2:
            statistic, p_value = 0.0, 1.0
        else:
            table = [[ref_counts[c] for c in categories], [win_counts[c] for c in categories]]
            chi2, p, _, _ = stats.chi2_contingency(table)
            statistic, p_value = float(chi2), float(p)
        test = "chi2"
    return FeatureDrift(
        feature, test, statistic, p_value, p_value < p_value_threshold, len(win), len(ref)
    )


def compare(
    model: str,
    version: str,
    reference_columns: Mapping[str, Sequence[Any]],
    rows: Sequence[Row],
    features: Sequence[str],
    p_value_threshold: float,
    min_window: int,
    reference: Reference | None = None,
) -> DriftReport:
    """The drift report of ``rows`` (the window) against ``reference_columns``."""
    if len(rows) < min_window:
        return DriftReport(
            model, version, len(rows), min_window, p_value_threshold, None, (), reference,
            f"{len(rows)} input row(s) in the window; drift needs {min_window}",
        )  # fmt: skip
    results = []
    for name in features:
        if name not in reference_columns:
            results.append(FeatureDrift(name, "none", None, None, False,
                                        sum(name in r for r in rows), 0,
                                        "not a column of the reference"))  # fmt: skip
            continue
        window = [r.get(name) for r in rows]
        results.append(
            feature_drift(name, reference_columns[name], window, p_value_threshold, min_window)
        )
    tested = [f for f in results if f.test != "none"]
    verdict = any(f.drift for f in tested) if tested else None
    note = "" if tested else "no feature could be tested"
    return DriftReport(
        model, version, len(rows), min_window, p_value_threshold, verdict, tuple(results),
        reference, note,
    )  # fmt: skip
