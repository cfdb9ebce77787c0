"""Params and metrics of a commit: ``key=value`` pairs and JSON/YAML files, checked (pure).

Keys follow MLflow's rules; keys that look like secrets, and values that are a token of this
sandbox, are refused, so a commit never sends a credential to the tracking server.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidReference
from .project import SECRET_ENV
from .refs import inside_project

MAX_VALUES_FILE = 16 << 20

KEY_RE = re.compile(r"^[A-Za-z0-9_\-. /]{1,250}$")
SECRET_KEY_RE = re.compile(
    r"(password|passwd|secret|api[_-]?key|access[_-]?key|credential|(^|[_.\-/ ])token$)",
    re.I,
)


def parse_pairs(pairs: Sequence[str], kind: str) -> dict[str, str]:
    """``["lr=0.1", "depth=3"]`` -> dict; refuses malformed pairs and secret-looking keys."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidReference(f"Invalid {kind} {pair!r}: use key=value")
        check_key(key, kind)
        out[key] = value.strip()
    return out


def check_key(key: str, kind: str) -> None:
    if not KEY_RE.match(key):
        raise InvalidReference(
            f"Invalid {kind} name {key!r}: letters, digits, '_', '-', '.', ' ' and '/' only"
        )
    if SECRET_KEY_RE.search(key):
        raise InvalidReference(f"Refusing {kind} {key!r}: it looks like a secret")


def to_metrics(raw: Mapping[str, Any]) -> dict[str, float]:
    metrics = {}
    for key, value in raw.items():
        check_key(key, "metric")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidReference(f"Metric {key}={value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidReference(f"Metric {key}={value!r} is not a finite number")
        metrics[key] = number
    return metrics


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_file(root: Path, path: str, kind: str) -> dict[str, Any]:
    """A flat dict from a JSON or YAML file (nested keys joined with '.')."""
    import yaml

    file = inside_project(root, path, f"{kind} file")
    if not file.is_file():
        raise InvalidReference(f"{kind} file {path!r} does not exist")
    if file.stat().st_size > MAX_VALUES_FILE:
        raise InvalidReference(f"{kind} file {path!r} is over {MAX_VALUES_FILE >> 20} MiB")
    try:
        text = file.read_text()
        data = yaml.safe_load(text) if file.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, RecursionError, yaml.YAMLError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise InvalidReference(f"{kind} file {path!r} is not valid JSON/YAML: {reason}") from None
    if not isinstance(data, Mapping):
        raise InvalidReference(f"{kind} file {path!r} must hold a mapping of names to values")
    return flatten(data)


def check_values(params: Mapping[str, str]) -> None:
    secrets = [os.environ[k] for k in SECRET_ENV if len(os.environ.get(k, "")) >= 8]
    for key, value in params.items():
        if any(s in value for s in secrets):
            raise InvalidReference(f"Refusing param {key!r}: its value is a token of this sandbox")
