"""What a task is once an app is built: its declaration, a pydantic model of its
parameters made from the function's signature, and one `ParamField` per parameter.

Every surface reads these and nothing else: the API and OpenAPI document take
`schema()`, the HTML form, Dash and the CLI take `fields` (one description of each
parameter's kind, bounds and choices, made from the JSON Schema), and the API, the
forms, Dash, the CLI, schedules and the worker all validate through `parse`, so a
bad value gets the same field message everywhere.

Values travel as JSON (the run row, the Celery message); `arguments` turns them
back into the Python values the function was declared with (a `date`, an `Enum`).
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model

from myapp.tasks.declaration import Declaration, FromSetting
from myapp.users.roles import Role

# progress(current, total, message): the task reports how far it is.
ProgressHook = Callable[[int, int, str], None]

# The kinds of parameter every surface can show and parse (ParamField.kind).
KINDS = ("bool", "integer", "number", "string", "choice", "date", "datetime")
# Strings without a declared max_length are still bounded: they are stored with
# every run and shown in lists.
DEFAULT_MAX_LENGTH = 1000
# How far before the hard limit the soft one (which the task sees) fires.
SOFT_LIMIT_MARGIN = 0.1


class ValidationError(Exception):
    """Bad task parameters: `fields` maps each parameter to what is wrong with it."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in fields.items()))


class TaskDeclarationError(RuntimeError):
    """A task that cannot be served: a bad signature, an undescribable parameter
    type, a module that does not import, two tasks with one name. Raised when the
    app is built, so every process stops at start with the message."""


class UnknownTask(LookupError):
    """No task has that name."""


class RunCancelled(Exception):
    """Raised inside a task when its run was revoked: stop working."""


@dataclass(frozen=True)
class RunContext:
    """What a task function gets besides its parameters: its run id, a progress
    callback (which also raises RunCancelled once the run has been cancelled) and
    `log`, the run's own log (a `logging.Logger`; its lines are kept with the run
    and shown to whoever may read it)."""

    run_id: str
    progress: ProgressHook
    # Outside a worker (a team testing its function directly) lines go to the
    # ordinary `myapp.task` logger.
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("myapp.task"))
    # The attempt that runs it (the run's `attempts` at its claim): the data commit
    # passes it on, so a taken-over attempt's rows are refused inside Redis.
    attempt: int | None = None

    def cancelled(self) -> NoReturn:
        """Stop the task: its run was cancelled."""
        raise RunCancelled(self.run_id)


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
            parts.append(f"{_number(self.minimum)} to {_number(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f"at least {_number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"at most {_number(self.maximum)}")
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
        return _number(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class TaskDefinition:
    """A declared task, bound to one app's settings."""

    name: str
    description: str
    role: Role
    func: Callable[..., Any] = field(compare=False)
    model: type[BaseModel] = field(compare=False, repr=False)
    fields: tuple[ParamField, ...] = ()
    queue: str | None = None
    time_limit: float | None = None

    @classmethod
    def build(
        cls, declaration: Declaration, config: Mapping[str, Any]
    ) -> TaskDefinition:
        """The definition of `declaration` with bounds read from `config`; raises
        TaskDeclarationError naming the task and parameter it cannot serve."""
        model = _parameters_model(declaration, config)
        definition = cls(
            name=declaration.name,
            description=_first_line(declaration.func.__doc__) or declaration.name,
            role=declaration.role,
            func=declaration.func,
            model=model,
            queue=declaration.queue,
            time_limit=declaration.time_limit,
        )
        fields = tuple(
            _param_field(declaration, name, schema, name in definition.required)
            for name, schema in definition.schema()["properties"].items()
        )
        return cls(**{**definition.__dict__, "fields": fields})

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.model.model_fields.items() if f.is_required())

    @property
    def soft_time_limit(self) -> float | None:
        """When the task itself is told to stop (SoftTimeLimitExceeded)."""
        if self.time_limit is None:
            return None
        return self.time_limit - max(
            0.5, min(60.0, self.time_limit * SOFT_LIMIT_MARGIN)
        )

    def field(self, name: str) -> ParamField | None:
        return next((f for f in self.fields if f.name == name), None)

    def validate(
        self, raw: Mapping[str, Any] | None, *, from_text: bool = False
    ) -> dict[str, Any]:
        """The parameters as JSON holds them, defaults filled in, or ValidationError
        naming each field.

        JSON callers (the API, Celery messages, schedules) are checked strictly: a
        number must be a number, `true` a boolean. `from_text` is for what people
        type (forms, Dash, the command line): "3", "false", "2026-01-31" and
        comma-separated lists are read as their kinds; a blank field is its default.
        """
        return self._model(raw, from_text).model_dump(mode="json")

    def arguments(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validated JSON parameters as the function's Python values."""
        model = self._model(params, False)
        return {name: getattr(model, name) for name in self.model.model_fields}

    def _model(self, raw: Mapping[str, Any] | None, from_text: bool) -> BaseModel:
        values = dict(raw or {})
        try:
            if from_text:
                return self.model.model_validate(self._from_text(values))
            return self.model.model_validate_json(
                json.dumps(self._whole_numbers(values), default=str), strict=True
            )
        except pydantic.ValidationError as exc:
            raise ValidationError(self._messages(exc)) from None

    def _whole_numbers(self, values: dict[str, Any]) -> dict[str, Any]:
        """JSON has one number type: 341.0 is the integer 341 (JSON Schema agrees),
        which strict validation would refuse; 2.5 and `true` stay refused."""
        for spec in self.fields:
            if spec.kind == "integer" and spec.name in values:
                values[spec.name] = _whole(values[spec.name])
        return values

    def _from_text(self, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in values.items():
            spec = self.field(name)
            if isinstance(value, str):
                value = value.strip()
            if spec is None:
                out[name] = value
            elif value == "" or value is None:
                # Blank: the default (or "is required"), never an empty value of
                # another kind. A text or a choice that may be none is none (the
                # form's "(any)" option is blank).
                if spec.nullable and spec.kind in ("string", "choice"):
                    out[name] = None
            elif spec.multiple and isinstance(value, str):
                out[name] = [part.strip() for part in value.split(",") if part.strip()]
            elif spec.nullable and value == "none":
                out[name] = None
            else:
                out[name] = value
            if spec is not None and spec.kind == "choice" and name in out:
                out[name] = self._choice(name, out[name])
        return out

    def _choice(self, name: str, value: Any) -> Any:
        """Text as the choice it names: "2" is the 2 of `Literal[1, 2, 3]` (pydantic
        reads "2" as an int, but never as an int literal)."""
        item = _item_schema(self.schema()["properties"][name]) or {}
        by_text = {str(choice): choice for choice in _choices(item)}
        if isinstance(value, list):
            return [by_text.get(v, v) if isinstance(v, str) else v for v in value]
        return by_text.get(value, value) if isinstance(value, str) else value

    def _messages(self, exc: pydantic.ValidationError) -> dict[str, str]:
        messages: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            name = str(loc[0]) if loc else "parameters"
            if name not in messages:
                messages[name] = self._message(name, error)
        return messages

    def _message(self, name: str, error: Any) -> str:
        spec = self.field(name)
        loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
        item = (
            f"item {loc[1] + 1}: " if len(loc) > 1 and isinstance(loc[1], int) else ""
        )
        if kind == "extra_forbidden" or spec is None:
            expected = ", ".join(f.name for f in self.fields) or "none"
            return f"is not a parameter of {self.name} (expected: {expected})"
        if kind == "missing" or (error.get("input") is None and not item):
            return "is required"
        return item + _plain_message(kind, ctx, spec, error["msg"])

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the parameters object, self-contained (no `$ref`)."""
        schema = self.model.model_json_schema()
        definitions = schema.pop("$defs", {})
        schema = _inline(schema, definitions)
        schema.pop("title", None)
        schema.setdefault("required", [])
        return schema

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.schema(),
            "role": self.role.value,
            "queue": self.queue,
            "time_limit": self.time_limit,
            "runs_url": f"/api/tasks/{self.name}/runs",
        }


# -- building the model -------------------------------------------------------


def _parameters_model(
    declaration: Declaration, config: Mapping[str, Any]
) -> type[BaseModel]:
    where = declaration.where
    try:
        hints = typing.get_type_hints(declaration.func, include_extras=True)
    except Exception as exc:  # a name the annotations use does not exist
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}): its annotations cannot be read: {exc}"
        ) from None
    params = list(inspect.signature(declaration.func).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}): the first parameter must be the "
            "RunContext (ctx)"
        )
    fields: dict[str, Any] = {}
    settings_bounded: set[str] = set()
    for param in params[1:]:
        prefix = f"task {declaration.name} ({where}), parameter {param.name!r}"
        if param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TaskDeclarationError(
                f"{prefix}: *args and **kwargs cannot be described"
            )
        if param.name not in hints:
            raise TaskDeclarationError(f"{prefix}: has no type annotation")
        annotation = _settings_bounds(hints[param.name], config, prefix)
        if annotation is not hints[param.name]:
            settings_bounded.add(param.name)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    try:
        model = create_model(
            f"{declaration.name}_parameters",
            __config__=ConfigDict(
                extra="forbid",
                allow_inf_nan=False,
                str_max_length=DEFAULT_MAX_LENGTH,
                # A default above a bound an operator lowered (MAX_ROWS_PER_RUN) is
                # refused at the start, with the field's message, not in the worker.
                validate_default=True,
            ),
            **fields,
        )
        model.model_json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
        culprit = _undescribable(fields)
        which = f", parameter {culprit!r}" if culprit else ""
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}){which}: its type cannot be "
            f"described: {str(exc).splitlines()[0]}"
        ) from None
    _check_defaults(declaration, model, skip=settings_bounded)
    return model


def _undescribable(fields: Mapping[str, tuple[Any, Any]]) -> str | None:
    """The first parameter whose type pydantic cannot describe on its own (the
    model's error names the type, not the parameter)."""
    for name, (annotation, _) in fields.items():
        try:
            pydantic.TypeAdapter(annotation).json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError):
            return name
    return None


def _settings_bounds(annotation: Any, config: Mapping[str, Any], prefix: str) -> Any:
    """`Annotated[..., FromSetting(le="X")]` with X's value from `config`."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    base, *extras = typing.get_args(annotation)
    resolved: list[Any] = []
    for extra in extras:
        if not isinstance(extra, FromSetting):
            resolved.append(extra)
            continue
        bounds = {}
        for bound in ("ge", "le"):
            setting = getattr(extra, bound)
            if setting is None:
                continue
            if setting not in config:
                raise TaskDeclarationError(f"{prefix}: no setting named {setting!r}")
            bounds[bound] = config[setting]
        resolved.append(Field(**bounds))
    return Annotated[(base, *resolved)]


def _check_defaults(
    declaration: Declaration, model: type[BaseModel], skip: set[str]
) -> None:
    """A default the declaration itself refuses is a mistake in the code: stop at
    start. (One a setting's bound refuses, `skip`, is the operator's choice.)"""
    for name, info in model.model_fields.items():
        if info.is_required() or name in skip:
            continue
        try:
            pydantic.TypeAdapter(info.rebuild_annotation()).validate_python(
                info.default
            )
        except pydantic.ValidationError as exc:
            raise TaskDeclarationError(
                f"task {declaration.name} ({declaration.where}), parameter {name!r}: "
                f"its default {info.default!r} is not a valid value: "
                f"{exc.errors()[0]['msg']}"
            ) from None


def _param_field(
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
        choices=tuple(str(c) for c in _choices(single)),
    )


def _item_schema(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of one value of a parameter: without its `null` option, its
    items' for a list; None for a union of several kinds."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    if len(options) != 1:
        return None
    single = options[0]
    return single.get("items") if single.get("type") == "array" else single


def _kind(schema: Mapping[str, Any]) -> str | None:
    if _choices(schema):
        return "choice"
    formats = {"date": "date", "date-time": "datetime"}
    kinds = {"boolean": "bool", "integer": "integer", "number": "number"}
    if schema.get("type") == "string":
        return formats.get(schema.get("format", ""), "string")
    return kinds.get(schema.get("type", ""))


def _choices(schema: Mapping[str, Any]) -> list[Any]:
    if "const" in schema:
        return [schema["const"]]
    return list(schema.get("enum", []))


def _inline(
    node: Any, definitions: Mapping[str, Any], *, properties: bool = False
) -> Any:
    """`node` with every `$ref` to `$defs` replaced by its target, titles dropped
    (forms and OpenAPI documents read it as one piece). `properties`: `node` maps
    parameter names to their schemas."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **rest}, definitions)
    if properties:
        # Parameter names, not schema keywords: a parameter may be called `title`
        # or `default` like any other.
        return {name: _inline(value, definitions) for name, value in node.items()}
    return {
        key: value
        if key in ("default", "enum", "const")
        else _inline(value, definitions, properties=key == "properties")
        for key, value in node.items()
        if key != "title"
    }


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


# -- messages -----------------------------------------------------------------


def _plain_message(
    kind: str, ctx: Mapping[str, Any], spec: ParamField, text: str
) -> str:
    """Pydantic's error as our short field message, the same on every surface."""
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "greater_than": ("must be more than", "gt"),
        "less_than_equal": ("must be at most", "le"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{words} {_number(ctx[key])}"
    if kind.startswith("int_"):
        return "must be an integer"
    if kind == "finite_number":
        return "must be a finite number"
    if kind.startswith("float_"):
        return "must be a number"
    if kind.startswith("bool_"):
        return "must be true or false"
    if kind in ("literal_error", "enum"):
        return "must be one of " + ", ".join(spec.choices)
    if kind.startswith("datetime_") or (
        kind.startswith("date") and spec.kind == "datetime"
    ):
        return "must be a date and time (YYYY-MM-DDTHH:MM)"
    if kind.startswith("date_"):
        return "must be a date (YYYY-MM-DD)"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be a string"
    # Anything rarer: pydantic's own words, in our voice.
    return text.replace("Input should be", "must be").replace("Value error, ", "")


def _whole(value: Any) -> Any:
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _first_line(doc: str | None) -> str:
    """The docstring's summary: its first line, or its first paragraph when that
    sentence runs over several lines (never cut mid-sentence)."""
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())
