"""OpenAPI descriptions of prediction endpoints, generated from MLflow model signatures (pure)."""

from __future__ import annotations

from typing import Any

_JSON_TYPES = {
    "double": "number", "float": "number", "integer": "integer", "long": "integer",
    "boolean": "boolean", "string": "string", "binary": "string", "datetime": "string",
}  # fmt: skip


def _type_name(kind: Any) -> str:
    """``DataType.double`` -> ``"double"``; other types as MLflow prints them."""
    if kind is None:
        return "any"
    name = getattr(kind, "name", None)
    return str(name) if isinstance(name, str) else str(kind)


def signature_columns(signature: Any) -> dict[str, Any] | None:
    """``{"inputs": [{"name", "type"}], "outputs": [...]}`` of a signature, or None."""
    if signature is None:
        return None
    result: dict[str, Any] = {}
    for side in ("inputs", "outputs"):
        schema = getattr(signature, side, None)
        if schema is None:
            result[side] = None
            continue
        result[side] = [
            {"name": getattr(col, "name", None), "type": _type_name(getattr(col, "type", None))}
            for col in schema.inputs
        ]
    return result


def _column_schema(col: dict[str, Any]) -> dict[str, Any]:
    return {"type": _JSON_TYPES.get(str(col["type"]).split(".")[-1].lower(), "string")}


def model_openapi(name: str, ref: str, version: str, signature: Any, base: str) -> dict[str, Any]:
    """An OpenAPI 3 document for ``POST {base}/predict`` of one model version."""
    columns = (signature_columns(signature) or {}).get("inputs") or []
    named = [c for c in columns if c["name"]]
    record = {
        "type": "object",
        "properties": {c["name"]: _column_schema(c) for c in named},
        "required": [c["name"] for c in named],
    }
    split = {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {
                "type": "array",
                "items": {"type": "string", "enum": [c["name"] for c in named]},
            }
            if named
            else {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
        },
    }
    body = {
        "oneOf": [
            {
                "type": "object",
                "required": ["dataframe_split"],
                "properties": {"dataframe_split": split},
            },
            {
                "type": "object",
                "required": ["dataframe_records"],
                "properties": {"dataframe_records": {"type": "array", "items": record}},
            },
            {"type": "object", "required": ["inputs"], "properties": {"inputs": {}}},
        ]
    }
    example = {
        "dataframe_split": {"columns": [c["name"] for c in named], "data": [[0 for _ in named]]}
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{name} ({ref} -> version {version})",
            "version": str(version),
            "description": "Predictions from the dsplatform catalog; needs a hub token with "
            "the scope custom:dsplatform:predict.",
        },
        "paths": {
            f"{base.rstrip('/')}/predict": {
                "post": {
                    "summary": f"Predict with {name} {ref}",
                    "security": [{"hubToken": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body, "example": example}},
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"predictions": {"type": "array"}},
                                    }
                                }
                            },
                        },
                        "400": {"description": "Input does not match the model's signature"},
                        "401": {"description": "No or unknown token"},
                        "403": {"description": "Token without custom:dsplatform:predict"},
                        "404": {"description": "No such model, version or alias"},
                        "413": {"description": "Request too large"},
                    },
                }
            }
        },
        "components": {
            "securitySchemes": {
                "hubToken": {"type": "apiKey", "in": "header", "name": "Authorization"}
            }
        },
    }
