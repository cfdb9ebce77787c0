"""The emulator's etcd: objects with resource versions, selectors, and watch fan-out.

Every change bumps one global ``resourceVersion`` and is kept in a bounded history, so a
watch started at version N replays exactly the changes after N (or answers ``410 Expired``
when N is older than the history), then follows live changes, as the API server does.
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HISTORY = 5000

# plural -> (kind, namespaced)
RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "secrets": ("Secret", True),
    "services": ("Service", True),
    "configmaps": ("ConfigMap", True),
    "events": ("Event", True),
    "nodes": ("Node", False),
    "namespaces": ("Namespace", False),
}
SHORT_NAMES = {
    "pods": ["po"],
    "persistentvolumeclaims": ["pvc"],
    "services": ["svc"],
    "configmaps": ["cm"],
    "events": ["ev"],
    "nodes": ["no"],
    "namespaces": ["ns"],
}

# field selectors the API server supports per kind (besides metadata.name/namespace)
FIELDS: dict[str, set[str]] = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "nodes": {"spec.unschedulable"},
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SelectorError(ValueError):
    pass


_REQ_RE = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$"
)


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """``app=x,tier!=db,env in (a,b),!legacy,team`` -> predicate on a label dict."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_selector(selector or ""):
        m = _REQ_RE.match(part)
        if not m:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        key, op, value = m["key"], (m["op"] or "").strip(), m["value"]
        if m["neg"]:
            if op:
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
            tests.append(lambda labels, k=key: k not in labels)
        elif not op:
            tests.append(lambda labels, k=key: k in labels)
        elif op in ("=", "=="):
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        else:
            values = {v.strip() for v in (value or "").strip("()").split(",") if v.strip()}
            if op == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
    return lambda labels: all(t(labels) for t in tests)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    if isinstance(value, Mapping) and path == "source":
        value = value.get("component")
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_matcher(plural: str, selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """``involvedObject.kind=Pod,status.phase!=Failed`` -> predicate (supported fields only,
    as the API server: anything else is a 400)."""
    allowed = {"metadata.name", "metadata.namespace"} | FIELDS.get(plural, set())
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in _split_selector(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid selector: {part.strip()!r}; can't understand it")
        path, op, value = m.groups()
        if path not in allowed:
            raise SelectorError(f"field label not supported: {path}")
        if op == "!=":
            tests.append(lambda o, p=path, v=value: field_value(o, p) != v)
        else:
            tests.append(lambda o, p=path, v=value: field_value(o, p) == v)
    return lambda obj: all(t(obj) for t in tests)


@dataclass
class Watcher:
    plural: str
    namespace: str | None
    match: Callable[[Mapping[str, Any]], bool]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class Expired(Exception):
    """The requested resourceVersion is older than the kept history."""


class Store:
    """Objects by (plural, namespace, name); every change is a watch event."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rv = 0
        self.history: deque[tuple[int, str, str, dict[str, Any]]] = deque(maxlen=HISTORY)
        self.watchers: list[Watcher] = []
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    # --- reads ----------------------------------------------------------------------------
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    def items(self, plural: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        for (p, ns, _), obj in list(self.objects.items()):
            if p == plural and (namespace is None or ns == namespace):
                yield obj

    # --- writes ---------------------------------------------------------------------------
    def _bump(self, kind: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        snapshot = copy.deepcopy(obj)
        self.history.append((self.rv, kind, plural, snapshot))
        ns = obj["metadata"].get("namespace")
        for w in list(self.watchers):
            if w.plural == plural and (w.namespace is None or w.namespace == ns) and w.match(obj):
                w.queue.put_nowait({"type": kind, "object": snapshot})
        for listener in list(self.listeners):
            listener(kind, plural, snapshot)
        return snapshot

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        key = (plural, meta.get("namespace", ""), meta["name"])
        self.objects[key] = obj
        return self._bump("ADDED", plural, obj)

    def modify(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.objects[(plural, meta.get("namespace", ""), meta["name"])] = obj
        return self._bump("MODIFIED", plural, obj)

    def remove(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.pop((plural, namespace, name), None)
        return None if obj is None else self._bump("DELETED", plural, obj)

    # --- watch ----------------------------------------------------------------------------
    def watch(
        self,
        plural: str,
        namespace: str | None,
        match: Callable[[Mapping[str, Any]], bool],
        resource_version: str | None,
    ) -> tuple[Watcher, list[dict[str, Any]]]:
        """Register a watcher; the events to send first (replay or synthetic ADDED).

        Raises:
            Expired: ``resource_version`` is older than the history kept.
        """
        if resource_version in (None, "", "0"):
            first = [
                {"type": "ADDED", "object": copy.deepcopy(o)}
                for o in self.items(plural, namespace)
                if match(o)
            ]
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise Expired(resource_version) from None
            oldest = self.history[0][0] if self.history else self.rv + 1
            if since < oldest - 1 and since < self.rv:
                raise Expired(f"too old resource version: {since} ({oldest})")
            first = [
                {"type": kind, "object": copy.deepcopy(obj)}
                for rv, kind, p, obj in self.history
                if rv > since
                and p == plural
                and (namespace is None or obj["metadata"].get("namespace") == namespace)
                and match(obj)
            ]
        watcher = Watcher(plural, namespace, match)
        self.watchers.append(watcher)
        return watcher, first

    def unwatch(self, watcher: Watcher) -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
