"""What a task is once an app is built: its declaration, a pydantic model of its
parameters made from the function's signature, and one `ParamField` per parameter.

Every surface reads these and nothing else: the API and OpenAPI document take
`schema()`, the HTML form, Dash and the CLI take `fields` (one description of each
parameter's kind, bounds and choices, made from the JSON Schema), and the API, the
forms, Dash, the CLI, schedules and the worker all validate through `parse`, so a
bad value gets the same field message everywhere.

Values travel as JSON (the run row, the Celery message); `arguments` turns them
back into the Python values the function was declared with (a `date`, an `Enum`).

The parts: `parameters` makes the model and its schema, `fields` the `ParamField`s,
`messages` the field messages, `errors` the errors (all importable from here).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pydantic
from pydantic import BaseModel

from myapp.tasks.declaration import Declaration
from myapp.tasks.errors import (
    RunCancelled,
    TaskDeclarationError,
    UnknownTask,
    ValidationError,
)
from myapp.tasks.fields import (
    KINDS,
    ParamField,
    choices,
    item_schema,
    param_field,
)
from myapp.tasks.messages import plain_message
from myapp.tasks.parameters import inline, parameters_model
from myapp.users.roles import Role

__all__ = [
    "KINDS",
    "ParamField",
    "ProgressHook",
    "RunCancelled",
    "RunContext",
    "TaskDeclarationError",
    "TaskDefinition",
    "UnknownTask",
    "ValidationError",
]

# progress(current, total, message): the task reports how far it is.
ProgressHook = Callable[[int, int, str], None]

# How far before the hard limit the soft one (which the task sees) fires.
SOFT_LIMIT_MARGIN = 0.1


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
        model = parameters_model(declaration, config)
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
            param_field(declaration, name, schema, name in definition.required)
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
        item = item_schema(self.schema()["properties"][name]) or {}
        by_text = {str(choice): choice for choice in choices(item)}
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
        return item + plain_message(kind, ctx, spec, error["msg"])

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the parameters object, self-contained (no `$ref`)."""
        schema = self.model.model_json_schema()
        definitions = schema.pop("$defs", {})
        schema = inline(schema, definitions)
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


def _whole(value: Any) -> Any:
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _first_line(doc: str | None) -> str:
    """The docstring's summary: its first line, or its first paragraph when that
    sentence runs over several lines (never cut mid-sentence)."""
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())
