"""Render the Helm chart offline (helm-python-sdk: the Helm v4 SDK, no cluster, no binary)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from .hub import REPO

CHART = REPO / "helm" / "dsplatform"
LINT_VALUES = CHART / "ci" / "lint-values.yaml"
RELEASE = "dsp"
NAMESPACE = "data"


def load_values(path: Path = LINT_VALUES) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def render(values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (over its defaults), in file order.

    Raises:
        helm_python.errors.HelmValuesError: the values break values.schema.json.
        helm_python.errors.HelmRenderError: a template refused the values (``fail``).
    """
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``, or ending in ``-name``)."""
    matches = [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name or o["metadata"]["name"].endswith(name))
    ]
    assert len(matches) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def hub_values(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The hub's values document, as the hub reads it from its ConfigMap."""
    configmap = find(objects, "ConfigMap", "-hub")
    values: dict[str, Any] = yaml.safe_load(configmap["data"]["values.yaml"])
    return values


def secret_value(objects: list[dict[str, Any]], ref: Mapping[str, str]) -> str:
    """The value a ``secretKeyRef`` points to, from the rendered Secret."""
    secret = find(objects, "Secret", ref["name"])
    return str(secret["stringData"][ref["key"]])


def container_env(
    objects: list[dict[str, Any]], container: Mapping[str, Any], external: str | None = None
) -> dict[str, str]:
    """A container's environment with ``secretKeyRef``s resolved from the rendered Secrets
    (a Secret the chart does not render, e.g. an ``existingSecret``, gives ``external``
    where that is given)."""
    env = {}
    rendered = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if external is not None and ref["name"] not in rendered:
                env[item["name"]] = external
            else:
                env[item["name"]] = secret_value(objects, ref)
    return env


DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
# the chart rendered with its defaults and with the lint values file that sets every option
VALUES = {"defaults": {}, "lint-values": load_values(LINT_VALUES)}


@pytest.fixture(name="rendered", scope="module", params=list(VALUES))
def rendered_fixture(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUES[request.param])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a label selector (matchLabels and matchExpressions) select ``labels``?"""
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, values: key in labels,
        "DoesNotExist": lambda key, values: key not in labels,
    }
    return all(
        tests[e["operator"]](e["key"], e.get("values") or [])
        for e in selector.get("matchExpressions", [])
    )
