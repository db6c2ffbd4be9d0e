"""One description of each parameter (`ParamField`), made from its JSON Schema: its
kind, bounds, choices and default, as forms, Dash and the CLI show and read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from myapp.tasks.declaration import Declaration
from myapp.tasks.errors import TaskDeclarationError

# The kinds of parameter every surface can show and parse (ParamField.kind).
KINDS = ("bool", "integer", "number", "string", "choice", "date", "datetime")


@dataclass(frozen=True)
class ParamField:
    """One parameter as a form, Dash or the CLI shows and reads it."""

    name: str
    kind: str  # one of KINDS
    description: str = ""
    required: bool = False
    default: Any = None  # as JSON holds it
    nullable: bool = False
    multiple: bool = False  # a list of `kind`
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()

    @property
    def summary(self) -> str:
        """Kind, bounds and default in a few words (CLI, hints under inputs)."""
        kind = {"integer": "whole number", "number": "number", "bool": "true/false"}
        parts = [kind.get(self.kind, self.kind)]
        if self.choices:
            parts[0] = "one of " + ", ".join(self.choices)
        if self.multiple:
            parts[0] = "list (comma-separated) of " + parts[0]
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{number(self.minimum)} to {number(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f"at least {number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"at most {number(self.maximum)}")
        if self.required:
            parts.append("required")
        else:
            parts.append("default " + (self.text(self.default) or "none"))
        return "; ".join(parts)

    @property
    def hint(self) -> str:
        """What to enter, in a sentence or two, under the field of a form (HTML and
        Dash): the description, the kind and its bounds, the default."""
        return _hint(self)

    def text(self, value: Any) -> str:
        """A value as a person types it (forms, the CLI): lists comma-separated."""
        if value is None:
            return "none" if self.nullable else ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ",".join(self.text(v) for v in value)
        return number(value) if isinstance(value, float) else str(value)


def param_field(
    declaration: Declaration, name: str, schema: Mapping[str, Any], required: bool
) -> ParamField:
    """A parameter's JSON Schema as one of the kinds every surface shows."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    nullable = len(options) < len(schema.get("anyOf", [schema]))
    single = options[0] if len(options) == 1 else None
    multiple = single is not None and single.get("type") == "array"
    if multiple:
        single = single.get("items")  # type: ignore[union-attr]
    kind = _kind(single) if single is not None else None
    if kind is None:
        raise TaskDeclarationError(
            f"task {declaration.name} ({declaration.where}), parameter {name!r}: "
            f"its type cannot be shown as a form field (kinds: bool, int, float, str, "
            "Literal or Enum choices, date, datetime, a list of those, or X | None)"
        )
    assert single is not None
    bounds = {**single, **{k: v for k, v in schema.items() if k != "anyOf"}}
    return ParamField(
        name=name,
        kind=kind,
        description=schema.get("description", ""),
        required=required,
        default=schema.get("default"),
        nullable=nullable,
        multiple=multiple,
        minimum=bounds.get("minimum", bounds.get("exclusiveMinimum")),
        maximum=bounds.get("maximum", bounds.get("exclusiveMaximum")),
        min_length=single.get("minLength"),
        max_length=single.get("maxLength"),
        pattern=single.get("pattern"),
        choices=tuple(str(c) for c in choices(single)),
    )


def item_schema(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of one value of a parameter: without its `null` option, its
    items' for a list; None for a union of several kinds."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    if len(options) != 1:
        return None
    single = options[0]
    return single.get("items") if single.get("type") == "array" else single


def _kind(schema: Mapping[str, Any]) -> str | None:
    if choices(schema):
        return "choice"
    formats = {"date": "date", "date-time": "datetime"}
    kinds = {"boolean": "bool", "integer": "integer", "number": "number"}
    if schema.get("type") == "string":
        return formats.get(schema.get("format", ""), "string")
    return kinds.get(schema.get("type", ""))


def choices(schema: Mapping[str, Any]) -> list[Any]:
    if "const" in schema:
        return [schema["const"]]
    return list(schema.get("enum", []))


# -- words --------------------------------------------------------------------

_KIND_WORDS = {
    "integer": "Whole number",
    "number": "Number",
    "string": "Text",
    "date": "Date (YYYY-MM-DD)",
    "datetime": "Date and time (YYYY-MM-DDTHH:MM)",
}
_LIST_WORDS = {
    "integer": "Whole numbers",
    "number": "Numbers",
    "string": "Texts",
    "date": "Dates (YYYY-MM-DD)",
    "datetime": "Dates and times",
}


def _hint(spec: ParamField) -> str:
    """What to enter, in a sentence or two: the description, the kind and its
    bounds, and what an empty field means."""
    parts = [spec.description.strip().rstrip(".")] if spec.description else []
    if spec.kind == "choice":
        parts.append("Choose any number" if spec.multiple else "")
    elif spec.multiple:
        parts.append(f"{_LIST_WORDS.get(spec.kind, 'Values')}, separated by commas")
    elif spec.kind != "bool":
        parts.append(_KIND_WORDS.get(spec.kind, "Text") + _bounds(spec))
    if spec.required:
        parts.append("Required")
    elif spec.default is None or spec.default == []:
        parts.append("Optional")
    elif spec.kind == "bool":
        parts.append("Ticked by default" if spec.default else "Unticked by default")
    else:
        parts.append(f"Default: {spec.text(spec.default)}")
    return ". ".join(p for p in parts if p) + "."


def _bounds(spec: ParamField) -> str:
    low, high = spec.text(spec.minimum), spec.text(spec.maximum)
    if spec.minimum is not None and spec.maximum is not None:
        return f" from {low} to {high}"
    if spec.minimum is not None:
        return f", at least {low}"
    if spec.maximum is not None:
        return f", at most {high}"
    if spec.max_length is not None and spec.kind == "string":
        return f", at most {spec.max_length} characters"
    return ""


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
