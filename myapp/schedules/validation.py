"""The checks made when a schedule is saved: each field on its own (name, interval,
cron text, time zone, enabled, description), exactly one of interval and cron, and
the parameters by the task's declaration (under `params.<name>`). Every problem is
collected into one ValidationError naming its field."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app

from myapp.models import SCHEDULE_NAME_LENGTH, Schedule
from myapp.schedules.timing import parse_cron, parse_timezone
from myapp.tasks import TaskDefinition, ValidationError

MAX_EVERY_S = 366 * 86400
MAX_DESCRIPTION = 500
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def refuse_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = {
        str(k): "is not a field of a schedule here (expected: "
        + ", ".join(allowed)
        + ")"
        for k in raw
        if k not in allowed
    }
    if unknown:
        raise ValidationError(unknown)


def validated(
    raw: Mapping[str, Any],
    definition: TaskDefinition | None,
    current: Schedule | None,
    *,
    from_text: bool,
) -> dict[str, Any]:
    """The columns to write, every problem collected into one ValidationError."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if current is None:
        _check(errors, values, "name", raw.get("name"), _name, from_text)
    for key, check in (
        ("every_s", _every_s),
        ("cron", _cron),
        ("timezone", _timezone),
        ("enabled", _enabled),
        ("description", _description),
    ):
        if key in raw:
            _check(errors, values, key, raw[key], check, from_text)
    if definition is not None and ("params" in raw or current is None):
        values["params"] = _params(raw.get("params"), definition, errors, from_text)
    _one_timing(raw, values, current, errors)
    if errors:
        raise ValidationError(errors)
    if current is None:
        values.setdefault("timezone", "UTC")
        values.setdefault("enabled", True)
        values.setdefault("description", "")
    return values


def _check(
    errors: dict[str, str],
    values: dict[str, Any],
    key: str,
    value: Any,
    check: Callable[[Any, bool], Any],
    from_text: bool,
) -> None:
    """values[key] = the checked value, or errors[key] = why not."""
    try:
        values[key] = check(value, from_text)
    except ValueError as exc:
        errors[key] = str(exc)


def _one_timing(
    raw: Mapping[str, Any],
    values: dict[str, Any],
    current: Schedule | None,
    errors: dict[str, str],
) -> None:
    """Exactly one of every_s and cron. Giving one on an edit replaces the other."""
    if "every_s" in errors or "cron" in errors:
        return
    every = values.get("every_s", current.every_s if current else None)
    cron = values.get("cron", current.cron if current else None)
    if "every_s" in raw and "cron" not in raw and every is not None:
        values["cron"] = cron = None
    if "cron" in raw and "every_s" not in raw and cron is not None:
        values["every_s"] = every = None
    if every is not None and cron is not None:
        message = "give either every_s or cron, not both"
        errors["every_s"] = errors["cron"] = message
    elif every is None and cron is None:
        errors["every_s"] = "give every_s (seconds between runs) or cron"
        errors["cron"] = "give cron (five fields) or every_s"


def _name(value: Any, _from_text: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is required")
    name = value.strip()
    if len(name) > SCHEDULE_NAME_LENGTH or not _NAME.fullmatch(name):
        raise ValueError(
            f"must be 1 to {SCHEDULE_NAME_LENGTH} lower-case letters, digits, "
            "'-', '_' or '.', starting with a letter or digit"
        )
    return name


def _every_s(value: Any, from_text: bool) -> int | None:
    if value is None or (from_text and value == ""):
        return None
    if from_text and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number of seconds")
    low = current_app.config["SCHEDULE_MIN_SECONDS"]
    if not low <= value <= MAX_EVERY_S:
        raise ValueError(f"must be between {low} and {MAX_EVERY_S} seconds")
    return value


def _cron(value: Any, from_text: bool) -> str | None:
    if value is None or (from_text and isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError("must be a cron expression (text), e.g. '0 2 * * *'")
    if len(value) > 100 or "\x00" in value:
        raise ValueError("must be at most 100 characters, without NUL")
    return parse_cron(value)


def _timezone(value: Any, from_text: bool) -> str:
    if from_text and isinstance(value, str) and not value.strip():
        return "UTC"
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an IANA time zone name (e.g. UTC, Europe/Paris)")
    return parse_timezone(value.strip())


def _enabled(value: Any, from_text: bool) -> bool:
    if from_text and isinstance(value, str):
        if value.lower() in ("true", "on", "1", "yes"):
            return True
        if value.lower() in ("false", "off", "0", "no", ""):
            return False
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _description(value: Any, from_text: bool) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise ValueError(f"must be text of at most {MAX_DESCRIPTION} characters")
    if "\x00" in value:  # PostgreSQL refuses NUL in text
        raise ValueError("must not contain NUL characters")
    return value


def _params(
    raw: Any, definition: TaskDefinition, errors: dict[str, str], from_text: bool
) -> dict[str, Any]:
    """The parameters as the task's declaration reads them, keeping only those the
    caller gave (so a default changed later applies to the schedule too)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors["params"] = "must be an object of the task's parameters"
        return {}
    try:
        validated = definition.validate(raw, from_text=from_text)
    except ValidationError as exc:
        errors.update({f"params.{k}": v for k, v in exc.fields.items()})
        return {}
    given = {k for k, v in raw.items() if not (from_text and v in ("", None))}
    return {k: v for k, v in validated.items() if k in given}
