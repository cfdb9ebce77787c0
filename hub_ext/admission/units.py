"""Parsing and formatting of resource quantities (pure functions).

Memory and disk use JupyterHub's ``ByteSpecification`` convention: a number of bytes, or a
number with a K/M/G/T suffix meaning powers of 1024 (``"2G"`` = 2 GiB). Kubernetes-style
``Ki/Mi/Gi/Ti`` suffixes are accepted as the same units.
"""

from __future__ import annotations

import math
import re

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B?)?\s*$", re.IGNORECASE)
# The largest size Kubernetes quantities, cgroup memory.max and rlimits can hold (int64).
MAX_BYTES = 2**63 - 1


class QuantityError(ValueError):
    """A resource quantity that cannot be understood."""


def parse_bytes(value: object) -> int:
    """Return a byte count from ``2048``, ``"512M"``, ``"2G"``, ``"1.5Gi"``.

    Raises:
        QuantityError: for booleans, negatives, NaN and unparseable strings.
    """
    if isinstance(value, bool):
        raise QuantityError(f"expected a size like '4G', got {value!r}")
    size: float
    if isinstance(value, int):
        if value < 0:
            raise QuantityError(f"size must not be negative, got {value}")
        size = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise QuantityError(f"size must be a finite non-negative number, got {value}")
        size = value
    elif isinstance(value, str) and (match := _BYTES_RE.match(value)):
        number, unit = match.groups()
        size = float(number) * _UNITS[unit.upper()]
    else:
        raise QuantityError(f"expected a size like '4G' or '512M', got {value!r}")
    if size > MAX_BYTES:
        raise QuantityError(f"size too large (at most {MAX_BYTES} bytes), got {value!r}")
    return int(size)


def parse_cpu(value: object) -> float:
    """Return a CPU count from ``2``, ``0.5``, ``"1.5"`` or Kubernetes millicores ``"500m"``."""
    if isinstance(value, bool):
        raise QuantityError(f"expected a CPU count like 2 or 0.5, got {value!r}")
    number: float
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise QuantityError(f"CPU count too large, got {value!r}") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise QuantityError(f"expected a CPU count like 2 or 0.5, got {value!r}") from None
    else:
        raise QuantityError(f"expected a CPU count like 2 or 0.5, got {value!r}")
    if not math.isfinite(number) or number < 0:
        raise QuantityError(f"CPU count must be a finite non-negative number, got {value!r}")
    return number


def parse_count(value: object) -> int:
    """Return a whole count (GPUs, servers) from an int or an integral string."""
    if isinstance(value, bool):
        raise QuantityError(f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdecimal():
        number = int(value.strip())
    else:
        raise QuantityError(f"expected a whole number, got {value!r}")
    if number < 0:
        raise QuantityError(f"expected a non-negative whole number, got {value!r}")
    return number


def format_bytes(n: float) -> str:
    """Format a byte count the way admins write it: ``4G``, ``512M``, ``1.5G``."""
    for unit in ("T", "G", "M", "K"):
        size = _UNITS[unit]
        if n >= size:
            value = n / size
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{int(n)}"


def format_cpu(n: float) -> str:
    """Format a CPU count without a trailing ``.0``: ``2``, ``0.5``."""
    return f"{n:.3f}".rstrip("0").rstrip(".") if n != int(n) else str(int(n))
