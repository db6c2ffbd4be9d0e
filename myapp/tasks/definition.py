"""What a task is: typed parameters with bounds, the definition, and what a task
function receives (`RunContext`).

The API, HTML forms, Dash, the CLI, beat and the worker all validate through
`TaskDefinition.validate`, so a bad parameter gets the same message everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flask import current_app

from myapp.users.roles import Role

# progress(current, total, message): the task reports how far it is.
ProgressHook = Callable[[int, int, str], None]


class ValidationError(Exception):
    """Bad task parameters: `fields` maps each parameter to what is wrong with it."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in fields.items()))


class UnknownTask(LookupError):
    """No task has that name."""


class RunCancelled(Exception):
    """Raised inside a task when its run was revoked: stop working."""


@dataclass(frozen=True)
class RunContext:
    """What a task function gets besides its parameters: its run id and a progress
    callback (which also raises RunCancelled once the run has been cancelled)."""

    run_id: str
    progress: ProgressHook

    def cancelled(self) -> NoReturn:
        """Stop the task: its run was cancelled."""
        raise RunCancelled(self.run_id)


@dataclass(frozen=True)
class Param:
    """One typed parameter of a task, with its bounds."""

    name: str
    type: str  # "integer", "number" or "string" (JSON Schema names)
    description: str
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    # Name of a config key whose value is the maximum (read when validating).
    maximum_config: str | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    def bounds(self) -> tuple[float | None, float | None]:
        maximum = self.maximum
        if self.maximum_config is not None:
            maximum = current_app.config[self.maximum_config]
        return self.minimum, maximum

    def parse(self, raw: Any, *, from_text: bool) -> Any:
        """Return the value as its type or raise ValueError with a user message."""
        if raw is None or (from_text and raw == "" and self.nullable):
            if self.nullable:
                return None
            raise ValueError("is required")
        if from_text and isinstance(raw, str):
            raw = self._from_text(raw.strip())
        value = self._check_type(raw)
        low, high = self.bounds()
        if low is not None and value < low:
            raise ValueError(f"must be at least {_fmt(low)}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {_fmt(high)}")
        if self.choices is not None and value not in self.choices:
            raise ValueError("must be one of " + ", ".join(self.choices))
        return value

    def _from_text(self, text: str) -> Any:
        try:
            if self.type == "integer":
                return int(text)
            if self.type == "number":
                return float(text)
        except ValueError:
            raise ValueError(f"must be {_article(self.type)}") from None
        return text

    def _check_type(self, raw: Any) -> Any:
        # bool is an int subclass in Python but not a number to a user.
        if isinstance(raw, bool):
            raise ValueError(f"must be {_article(self.type)}")
        if self.type == "integer":
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if not isinstance(raw, int):
                raise ValueError("must be an integer")
            return raw
        if self.type == "number":
            if not isinstance(raw, int | float) or not math.isfinite(raw):
                raise ValueError("must be a finite number")
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        if len(raw) > 200:
            raise ValueError("must be at most 200 characters")
        return raw

    def schema(self) -> dict[str, Any]:
        """JSON Schema of this parameter, bounds resolved from the current config."""
        low, high = self.bounds()
        schema: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.nullable:
            schema["type"] = [self.type, "null"]
        if self.default is not None or not self.required:
            schema["default"] = self.default
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
        if self.choices is not None:
            schema["enum"] = [*self.choices, *([None] if self.nullable else [])]
        if self.type == "string" and self.choices is None:
            schema["maxLength"] = 200
        return schema


@dataclass(frozen=True)
class TaskDefinition:
    """What a task is: its name (also the Celery task name), parameters, the lowest
    role that may start it, and its function.

    `func(ctx, **params)` receives a RunContext and the validated parameters as
    keywords, and returns a JSON-serialisable result.
    """

    name: str
    description: str
    params: tuple[Param, ...]
    role: Role
    func: Callable[..., Any] = field(compare=False)

    def validate(
        self, raw: Mapping[str, Any] | None, *, from_text: bool = False
    ) -> dict:
        """Parameters with defaults filled in, or ValidationError naming each field.

        `from_text` accepts strings for numbers (HTML forms, the command line); JSON
        callers must send real numbers.
        """
        raw = dict(raw or {})
        errors: dict[str, str] = {}
        known = {p.name for p in self.params}
        for name in raw:
            if name not in known:
                errors[str(name)] = (
                    "is not a parameter of "
                    + self.name
                    + " (expected: "
                    + ", ".join(sorted(known))
                    + ")"
                )
        values: dict[str, Any] = {}
        for param in self.params:
            if param.name not in raw or (
                from_text and raw[param.name] == "" and not param.nullable
            ):
                if param.required:
                    errors[param.name] = "is required"
                else:
                    values[param.name] = param.default
                continue
            try:
                values[param.name] = param.parse(raw[param.name], from_text=from_text)
            except ValueError as exc:
                errors[param.name] = str(exc)
        if errors:
            raise ValidationError(errors)
        return values

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the parameters object."""
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.schema(),
            "role": self.role.value,
            "runs_url": f"/api/tasks/{self.name}/runs",
        }


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _article(type_name: str) -> str:
    return {"integer": "an integer", "number": "a number"}.get(type_name, "a string")
