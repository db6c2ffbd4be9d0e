"""`/api/docs`: the JSON API as a page a person reads, drawn on the server from the
app's own OpenAPI document (`myapp.web.openapi`), so it can never disagree with
`/api/openapi.json`. No CDN, no script: a Jinja template over a plain summary of
each operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, render_template
from markupsafe import Markup, escape

from myapp.web.openapi import openapi_document

bp = Blueprint("api_docs", __name__)

METHODS = ("get", "post", "put", "patch", "delete")
# Schema keywords shown as bounds, in this order, with the words people read.
_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("pattern", "matches {}"),
    ("format", "{}"),
)


@dataclass
class Field:
    """One parameter or body property: its name and what it accepts."""

    name: str
    where: str
    kind: str
    required: bool
    description: str = ""
    constraints: list[str] = field(default_factory=list)
    default: Any = None
    has_default: bool = False


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    anchor: str
    open: bool
    parameters: list[Field]
    body: list[Field]
    body_note: str | None
    responses: list[tuple[str, str, str]]


def describe(schema: dict[str, Any]) -> str:
    """A schema's type in a few words: `integer`, `string or null`, `Run`,
    `one of: hour, day`, `list of string`."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            return " or ".join(describe(s) for s in schema[combined])
    kind = schema.get("type")
    if kind == "array" or (isinstance(kind, list) and "array" in kind):
        return "list of " + describe(schema.get("items", {}))
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind or "any JSON"


def constraints(schema: dict[str, Any]) -> list[str]:
    return [text.format(schema[key]) for key, text in _BOUNDS if key in schema]


def _field(name: str, where: str, schema: dict[str, Any], **extra: Any) -> Field:
    return Field(
        name=name,
        where=where,
        kind=describe(schema),
        constraints=constraints(schema),
        default=schema.get("default"),
        has_default="default" in schema,
        description=extra.pop("description", None) or schema.get("description", ""),
        **extra,
    )


def _parameters(declared: list[dict[str, Any]]) -> list[Field]:
    return [
        _field(
            p["name"],
            p["in"],
            p.get("schema", {}),
            required=bool(p.get("required")),
            description=p.get("description", ""),
        )
        for p in declared
    ]


def _body(operation: dict[str, Any]) -> tuple[list[Field], str | None]:
    body = operation.get("requestBody")
    if not body:
        return [], None
    schema = body["content"]["application/json"]["schema"]
    needed = set(schema.get("required", ()))
    fields = [
        _field(name, "body", prop, required=name in needed)
        for name, prop in schema.get("properties", {}).items()
    ]
    note = "A JSON object; leave out a field to use its default." + (
        "" if body.get("required") else " An empty body runs with every default."
    )
    return fields, note


def _responses(operation: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for code, response in operation["responses"].items():
        content = response.get("content", {}).get("application/json")
        shape = describe(content["schema"]) if content else ""
        found.append((code, response.get("description", ""), shape))
    return found


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of the document, in its order, ready for the template."""
    found = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body, note = _body(operation)
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary", ""),
                    anchor=operation.get("operationId") or f"{method}-{path}",
                    open=operation.get("security") == [],
                    parameters=_parameters(shared + operation.get("parameters", [])),
                    body=body,
                    body_note=note,
                    responses=_responses(operation),
                )
            )
    return found


def schemas(document: dict[str, Any]) -> dict[str, list[Field]]:
    """The shared shapes (Run, Error) as property lists."""
    shown = {}
    for name, schema in document["components"]["schemas"].items():
        needed = set(schema.get("required", ()))
        shown[name] = [
            _field(prop, "", spec, required=prop in needed)
            for prop, spec in schema.get("properties", {}).items()
        ]
    return shown


@bp.app_template_filter("code_spans")
def code_spans(text: str) -> Markup:
    """The document's descriptions mark commands `like this`: show them as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


@bp.get("/api/docs")
def api_docs():
    document = openapi_document()
    return render_template(
        "api_docs.html",
        info=document["info"],
        operations=operations(document),
        schemas=schemas(document),
        schemes=document["components"]["securitySchemes"],
    )
