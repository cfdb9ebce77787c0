"""Admission for the emulator: the official schema plus the API server's own checks.

Every object written through the API is checked with ``kubernetes-validate`` (the official
OpenAPI schemas, strict: unknown fields are refused, where a real server would drop them
with a warning unless ``fieldValidation=Strict``), then with the validation rules the schema
cannot express and the API server applies (names, label values, unique container and
volume names, mounts of undeclared volumes, requests <= limits, and request == limit for
extended resources such as ``nvidia.com/gpu``). Failures become the same ``Status`` objects
(422 ``Invalid`` with ``causes``, 409 ``AlreadyExists``, 404 ``NotFound`` ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import kubernetes_validate

from .scheduling import QuantityError, parse_quantity

K8S_VERSION = "1.33"
NATIVE = {"cpu", "memory", "ephemeral-storage", "storage", "pods"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Cause = dict[str, str]


def status(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` object as the API server sends it with an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def not_found(plural: str, name: str) -> dict[str, Any]:
    return status(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def already_exists(plural: str, name: str) -> dict[str, Any]:
    return status(
        409, "AlreadyExists", f'{plural} "{name}" already exists', {"name": name, "kind": plural}
    )


def invalid(kind: str, name: str, causes: list[Cause]) -> dict[str, Any]:
    texts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return status(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}',
        {"name": name, "kind": kind, "causes": causes},
    )


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Cause:
    return {"reason": reason, "message": message, "field": field}


def _path(parts: Any) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def schema_causes(obj: Mapping[str, Any]) -> list[Cause]:
    """What the official schema says is wrong with ``obj`` ([] = valid)."""
    try:
        kubernetes_validate.validate(dict(obj), K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = _path(error.absolute_path)
        if error.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)' was unexpected", error.message) or ["?"]
            unknown = f"{field}.{extra[0]}" if field else extra[0]
            return [_cause(unknown, f'unknown field "{unknown}"', "FieldValueInvalid")]
        if error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message) or ["?"]
            where = f"{field}.{missing[0]}" if field else missing[0]
            return [_cause(where, "Required value", "FieldValueRequired")]
        value = json.dumps(error.instance)[:80]
        return [_cause(field, f"Invalid value: {value}: {error.message}")]
    return []


def _check_meta(meta: Mapping[str, Any], causes: list[Cause]) -> None:
    name = meta.get("name") or ""
    if not name:
        causes.append(
            _cause(
                "metadata.name",
                "Required value: name or generateName is required",
                "FieldValueRequired",
            )
        )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(
            _cause(
                "metadata.name",
                f"Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = str(key).rpartition("/")
        if (
            len(label) > 63
            or not _LABEL_NAME.match(label)
            or (prefix and not _DNS_SUBDOMAIN.match(prefix))
        ):
            causes.append(
                _cause(
                    "metadata.labels",
                    f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                _cause(
                    "metadata.labels",
                    f"Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )


def _check_resources(where: str, resources: Mapping[str, Any], causes: list[Cause]) -> None:
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    for table, values in (("limits", limits), ("requests", requests)):
        for name, value in values.items():
            try:
                parsed[table][name] = parse_quantity(value)
            except QuantityError as e:
                causes.append(
                    _cause(f"{where}.resources.{table}[{name}]", f'Invalid value: "{value}": {e}')
                )
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        extended = name not in NATIVE and ("/" in name or name.startswith("hugepages-"))
        if extended and lim is None:
            causes.append(
                _cause(
                    f"{where}.resources.limits",
                    "Required value: Limit must be set for non overcommitable resources",
                    "FieldValueRequired",
                )
            )
        elif extended and lim != req:
            causes.append(
                _cause(
                    f"{where}.resources.requests[{name}]",
                    f'Invalid value: "{requests[name]}": must be equal to {name} limit of {limits[name]}',
                )
            )
        elif lim is not None and req > lim:
            causes.append(
                _cause(
                    f"{where}.resources.requests",
                    f'Invalid value: "{requests[name]}": must be less than or equal to {name} limit of {limits[name]}',
                )
            )


def _check_pod_spec(spec: Mapping[str, Any], causes: list[Cause]) -> None:
    volumes = [v.get("name", "") for v in spec.get("volumes") or []]
    for i, name in enumerate(volumes):
        if name in volumes[:i]:
            causes.append(
                _cause(
                    f"spec.volumes[{i}].name", f'Duplicate value: "{name}"', "FieldValueDuplicate"
                )
            )
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            where = f"spec.{group}[{i}]"
            name = c.get("name", "")
            if not _DNS_LABEL.match(name) or len(name) > 63:
                causes.append(
                    _cause(
                        f"{where}.name",
                        f"Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                    )
                )
            elif name in seen:
                causes.append(
                    _cause(f"{where}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate")
                )
            seen.add(name)
            if not c.get("image"):
                causes.append(_cause(f"{where}.image", "Required value", "FieldValueRequired"))
            for j, env in enumerate(c.get("env") or []):
                if not _ENV_NAME.match(env.get("name", "")):
                    causes.append(
                        _cause(
                            f"{where}.env[{j}].name",
                            f"Invalid value: \"{env.get('name')}\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
                        )
                    )
            paths: set[str] = set()
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in volumes:
                    causes.append(
                        _cause(
                            f"{where}.volumeMounts[{j}].name",
                            f'Not found: "{m.get("name")}"',
                            "FieldValueNotFound",
                        )
                    )
                if m.get("mountPath") in paths:
                    causes.append(
                        _cause(
                            f"{where}.volumeMounts[{j}].mountPath",
                            f'Invalid value: "{m.get("mountPath")}": must be unique',
                        )
                    )
                paths.add(m.get("mountPath", ""))
            _check_resources(where, c.get("resources") or {}, causes)


POD_SPEC_MUTABLE = (
    "image",
    "activeDeadlineSeconds",
    "tolerations",
    "terminationGracePeriodSeconds",
)


def _without_mutable(spec: Mapping[str, Any]) -> dict[str, Any]:
    clean = json.loads(json.dumps(spec))
    for group in ("initContainers", "containers"):
        for c in clean.get(group) or []:
            c.pop("image", None)
    for key in POD_SPEC_MUTABLE:
        clean.pop(key, None)
    return clean


def admit(
    kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """None if the API server would accept ``obj``; else the 422 ``Status``."""
    name = (obj.get("metadata") or {}).get("name") or ""
    causes = schema_causes(obj)
    if not causes:
        _check_meta(obj.get("metadata") or {}, causes)
        if kind == "Pod":
            _check_pod_spec(obj.get("spec") or {}, causes)
            if old is not None and _without_mutable(obj.get("spec") or {}) != _without_mutable(
                old.get("spec") or {}
            ):
                causes.append(
                    _cause(
                        "spec",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                        "FieldValueForbidden",
                    )
                )
    return invalid(kind, name, causes) if causes else None


def default_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The API server's defaults for a new pod (the ones that matter here)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            image = c.get("image", "")
            tag = image.rpartition("/")[2]
            latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            resources = c.setdefault("resources", {})
            if resources.get("limits"):
                resources["requests"] = {**resources["limits"], **(resources.get("requests") or {})}
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    return pod


def qos_class(spec: Mapping[str, Any]) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        all(k in lim and lim[k] is not None for k in ("cpu", "memory"))
        and all(str(req.get(k, lim.get(k))) == str(lim.get(k)) for k in ("cpu", "memory"))
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"
