"""The API's query parameters and limits, each declared once: the views parse with
these declarations and the OpenAPI document is built from them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from myapp.models import SOURCES, STATES, USER_NAME_LENGTH
from myapp.runs.queries import MAX_CURSOR_LENGTH
from myapp.store import CATEGORIES, SORT_FIELDS
from myapp.tasks import ValidationError, task_registry

# Plain ASCII digits only: Python's int() also takes "1_0" and other scripts' digits.
_INTEGER = re.compile(r"-?[0-9]{1,12}")
MAX_RUN_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 200


@dataclass(frozen=True)
class QueryParam:
    """One query parameter: its type, bounds or choices, and default."""

    name: str
    description: str
    type: str = "string"  # "integer" or "string" (JSON Schema names)
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    # A tuple, or a function of the current app giving one (the app's task names).
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    max_length: int | None = None

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def parse(self, raw: str) -> Any:
        """The value of `raw`, or ValueError with the user's message."""
        if raw == "":
            return self.default
        if self.type == "integer":
            if not _INTEGER.fullmatch(raw):
                raise ValueError("must be an integer")
            value = int(raw)
            if not self.minimum <= value <= self.maximum:  # type: ignore[operator]
                raise ValueError(f"must be between {self.minimum} and {self.maximum}")
            return value
        allowed = self.allowed()
        if allowed is not None and raw not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        if self.max_length is not None and len(raw) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        return raw

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("maxLength", self.max_length),
            ("default", self.default),
        ):
            if value is not None:
                schema[key] = value
        allowed = self.allowed()
        if allowed is not None:
            schema["enum"] = list(allowed)
        return schema

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "schema": self.schema(),
            "description": self.description,
        }


RUNS_QUERY = (
    QueryParam("task", "task name", choices=lambda: tuple(task_registry())),
    QueryParam("state", "state", choices=STATES),
    QueryParam("source", "source", choices=SOURCES),
    QueryParam(
        "created_by", "name of the user who started it", max_length=USER_NAME_LENGTH
    ),
    QueryParam(
        "schedule_id",
        "id of the schedule that fired it or was run now",
        "integer",
        minimum=1,
        maximum=2**31 - 1,
    ),
    QueryParam("limit", "page size", "integer", default=50, minimum=1, maximum=200),
    QueryParam("cursor", "the `next` cursor of a page", max_length=MAX_CURSOR_LENGTH),
)

RUN_QUERY = (
    QueryParam(
        "wait",
        "answer as soon as the run changes (state or progress) or finishes, or "
        "after this many seconds",
        "integer",
        default=0,
        minimum=0,
        maximum=30,
    ),
)

LOGS_QUERY = (
    QueryParam(
        "after",
        "only the lines after this seq (the `next` of the last answer)",
        "integer",
        default=0,
        minimum=0,
        maximum=10**9,
    ),
)

DATA_QUERY = (
    QueryParam(
        "offset", "rows to skip", "integer", default=0, minimum=0, maximum=10**9
    ),
    QueryParam("limit", "page size", "integer", default=100, minimum=1, maximum=1000),
    QueryParam("sort", "sort field", default="created_at", choices=SORT_FIELDS),
    QueryParam("order", "sort order", default="desc", choices=("asc", "desc")),
    QueryParam("run_id", "only this run", max_length=MAX_RUN_ID_LENGTH),
    QueryParam("category", "only this category", choices=CATEGORIES),
)


def parse_query(
    args: MultiDict | Mapping[str, str], declared: tuple[QueryParam, ...]
) -> dict[str, Any]:
    """Every declared parameter (defaults filled in), or ValidationError naming each
    unknown, repeated or invalid one."""
    by_name = {p.name: p for p in declared}
    errors: dict[str, str] = {}
    values = {p.name: p.default for p in declared}
    lists = (
        args.to_dict(flat=False)
        if isinstance(args, MultiDict)
        else {k: [v] for k, v in args.items()}
    )
    for name, given in lists.items():
        param = by_name.get(name)
        if param is None:
            errors[name] = "is not a known query parameter"
        elif len(given) > 1:
            errors[name] = "must be given at most once"
        else:
            try:
                values[name] = param.parse(given[0])
            except ValueError as exc:
                errors[name] = str(exc)
    if errors:
        raise ValidationError(errors)
    return values
