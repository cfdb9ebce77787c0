"""``c.PlatformMonitoring``: the gateway's input sampling and the drift thresholds."""

from __future__ import annotations

from traitlets import Bool, Float, Int
from traitlets.config import Config, Configurable

from hub_ext.errors import ConfigError


class PlatformMonitoring(Configurable):
    """Metrics and drift detection of the prediction gateway (the catalog service).

    Example::

        c.PlatformMonitoring.sample_size = 2000       # rows kept per model version
        c.PlatformMonitoring.sample_rate = 0.5        # half of the requests are sampled
        c.PlatformMonitoring.drift_p_value = 0.01     # KS / chi-squared: drift below this
    """

    enabled = Bool(
        True,
        help="""Count predictions and keep a window of recent inputs for drift. Off: no
        metrics are recorded and no input is kept (``/metrics`` still answers).""",
    ).tag(config=True)

    sample_size = Int(
        1000,
        help="""Rows of recent inputs kept per model version (the drift window); the oldest
        go first. Memory is bounded by sample_size x max_features x max_versions.""",
    ).tag(config=True)

    sample_rate = Float(
        1.0,
        help="""Fraction of prediction requests whose rows enter the window (0 to 1).""",
    ).tag(config=True)

    max_versions = Int(
        50,
        help="Model versions with a window at once; the least recently used is dropped.",
    ).tag(config=True)

    max_features = Int(100, help="Columns kept per sampled row (the first ones).").tag(config=True)

    min_window = Int(
        30, help="Rows needed in the window before drift is computed (fewer: no verdict)."
    ).tag(config=True)

    drift_p_value = Float(
        0.01,
        help="""A feature drifts when its test's p-value is below this (Kolmogorov-Smirnov
        for numbers, chi-squared for categories).""",
    ).tag(config=True)

    reference_rows = Int(
        20000, help="Rows of the reference data kept (a uniform sample of larger files)."
    ).tag(config=True)

    drift_interval = Int(
        60,
        help="""Seconds between recomputations of the drift gauges in /metrics (for alert
        rules); 0: only when the drift API is called.""",
    ).tag(config=True)


def check(c: Config) -> None:
    """Start-up checks (ConfigError naming the key)."""
    settings = PlatformMonitoring(config=c)
    positive = ("sample_size", "max_versions", "max_features", "min_window", "reference_rows")
    for name in positive:
        if getattr(settings, name) < 1:
            raise ConfigError(
                f"c.PlatformMonitoring.{name}: {getattr(settings, name)!r} must be at least 1"
            )
    if not 0.0 <= settings.sample_rate <= 1.0:
        raise ConfigError(
            f"c.PlatformMonitoring.sample_rate: {settings.sample_rate!r} is not between 0 and 1"
        )
    if not 0.0 < settings.drift_p_value < 1.0:
        raise ConfigError(
            f"c.PlatformMonitoring.drift_p_value: {settings.drift_p_value!r} is not between 0 and 1"
        )
    if settings.drift_interval < 0:
        raise ConfigError(
            f"c.PlatformMonitoring.drift_interval: {settings.drift_interval!r} is negative"
        )
