"""PATCH bodies as the API server applies them (pure).

``application/merge-patch+json`` is RFC 7386; ``application/json-patch+json`` is RFC 6902
(add, remove, replace, test, copy, move). ``application/strategic-merge-patch+json`` (what
kubernetes_asyncio sends for a dict) is approximated: a merge patch in which lists of
objects that all carry a ``name`` (containers, env, volumes, ports) merge by name and
``{"$patch": "delete"}`` removes an entry; other lists are replaced.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif strategic and _named_list(value) and _named_list(result.get(key)):
            result[key] = _merge_by_name(result[key], value)
        else:
            result[key] = merge_patch(result.get(key), value, strategic)
    return result


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _merge_by_name(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Any]:
    merged = {item["name"]: item for item in old}
    for item in new:
        if item.get("$patch") == "delete":
            merged.pop(item["name"], None)
        else:
            merged[item["name"]] = merge_patch(merged.get(item["name"]), item, True)
    return list(merged.values())


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    if not parts:
        raise PatchError("cannot change the whole document")
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError):
            raise PatchError(f"path not found: /{'/'.join(parts)}") from None
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path))
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError):
        raise PatchError(f"path not found: {path}") from None


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"test failed at {path}")
            continue
        if kind in ("copy", "move"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                json_patch_remove(doc, op["from"])
            _add(doc, path, value)
        elif kind == "add":
            _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            json_patch_remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            parent, last = _parent(doc, _pointer(path))
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op.get("value"))
            else:
                parent[last] = copy.deepcopy(op.get("value"))
        else:
            raise PatchError(f"unknown operation {kind!r}")
    return doc


def _add(doc: Any, path: str, value: Any) -> None:
    parent, last = _parent(doc, _pointer(path))
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add at {path}")


def json_patch_remove(doc: Any, path: str) -> None:
    _get(doc, path)
    parent, last = _parent(doc, _pointer(path))
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]


def apply_patch(content_type: str, target: Any, body: Any) -> Any:
    """Apply a PATCH body by its content type.

    Raises:
        PatchError: unsupported content type or a patch that does not apply.
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json-patch+json":
        return json_patch(target, body)
    if kind == "application/merge-patch+json":
        return merge_patch(target, body)
    if kind == "application/strategic-merge-patch+json":
        return merge_patch(target, body, strategic=True)
    raise PatchError(
        f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {kind!r})"
    )
