"""Checking a real answer against the OpenAPI document's schema for its route and status."""

from __future__ import annotations

from openapi_schema_validator import OAS30Validator

__all__ = ["check_answer", "resolve", "schema"]


def resolve(document: dict, node):
    """Inline ``#/...`` references (the document has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(document, target)
        return {k: resolve(document, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(document, v) for v in node]
    return node


def schema(document: dict, path: str, method: str, status: str) -> dict:
    response = resolve(document, document["paths"][path][method]["responses"][status])
    return response["content"]["application/json"]["schema"]


def check_answer(document: dict, path: str, method: str, status: str, body) -> None:
    errors = sorted(OAS30Validator(schema(document, path, method, status)).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {status}: " + "; ".join(e.message for e in errors[:5])
