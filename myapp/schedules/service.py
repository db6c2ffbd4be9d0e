"""Schedules as users see them: create, edit, pause, resume, delete, run now, read.

Every edge (API, pages, command line) calls these with a `Requester`; the rules
live here once:

- viewers read; operators manage the schedules of tasks they may start, whoever
  made them; admins manage all;
- parameters are validated by the task's declaration when saved (the same messages
  as a start, under `params.<name>`), the cron text by cronsim, the time zone
  against the IANA database; each problem is a ValidationError naming its field;
- a schedule whose task is gone, or whose creator may no longer start it, is
  paused with the reason (`paused_reason`), which beat honours;
- every change is one INFO line naming who made it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from myapp import runs
from myapp.extensions import db
from myapp.models import SCHEDULE_NAME_LENGTH, Run, Schedule, User, isoformat, utcnow
from myapp.runs import NotAllowed, Requester
from myapp.schedules.timing import Timing, parse_cron, parse_timezone
from myapp.tasks import TaskDefinition, ValidationError, task_registry
from myapp.users import Role

log = logging.getLogger("myapp.schedules")

EDITABLE = ("params", "every_s", "cron", "timezone", "enabled", "description")
FIELDS = ("name", "task", *EDITABLE)
MAX_EVERY_S = 366 * 86400
MAX_DESCRIPTION = 500
MAX_ID = 2**31 - 1
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class ScheduleNameTaken(Exception):
    """Another schedule already has this name."""

    def __init__(self, name: str):
        super().__init__(f"a schedule named {name!r} already exists")
        self.name = name


# -- reading ---------------------------------------------------------------------


def list_schedules(task: str | None = None) -> list[Schedule]:
    query = select(Schedule).order_by(Schedule.name)
    if task is not None:
        query = query.where(Schedule.task == task)
    return list(db.session.scalars(query))


def get_schedule(schedule_id: int) -> Schedule | None:
    """The schedule with that id, or None (ids beyond a database integer too)."""
    if not 1 <= schedule_id <= MAX_ID:
        return None
    return db.session.get(Schedule, schedule_id)


def find_schedule(name: str) -> Schedule | None:
    return db.session.scalar(select(Schedule).where(Schedule.name == name))


def timing_of(schedule: Schedule) -> Timing:
    return Timing(schedule.every_s, schedule.cron, schedule.timezone or "UTC")


def paused_reason(schedule: Schedule, creator: User | None = None) -> str | None:
    """Why the app keeps a schedule from firing though it is enabled: its task no
    longer exists, or its creator may no longer start it. None: nothing stops it
    (the schedules a migration made, created_by null, belong to the system)."""
    definition = task_registry().get(schedule.task)
    if definition is None:
        return f"its task {schedule.task!r} no longer exists"
    if schedule.created_by is None:
        return None
    if creator is None:
        creator = db.session.scalar(
            select(User).where(User.name == schedule.created_by)
        )
    if creator is None:
        return f"its creator {schedule.created_by} no longer exists"
    if creator.disabled:
        return f"its creator {creator.name} is disabled"
    if not Role(creator.role).allows(definition.role):
        return (
            f"its creator {creator.name} ({creator.role}) may no longer start "
            f"{definition.name}, which needs the {definition.role} role"
        )
    return None


def schedule_json(schedule: Schedule, *, now: Any = None) -> dict[str, Any]:
    """The contract's JSON of a schedule (plus `paused_reason` and `describe`)."""
    now = now or utcnow()
    reason = paused_reason(schedule)
    timing = timing_of(schedule)
    try:
        upcoming = timing.upcoming(
            anchor=schedule.created_at, last_fire=schedule.last_fire_at, now=now
        )
    except Exception:  # a row written around the checks (bad cron in the database)
        upcoming = []
    last = _last_run(schedule.id)
    return {
        "id": schedule.id,
        "name": schedule.name,
        "task": schedule.task,
        "params": schedule.params,
        "every_s": schedule.every_s,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled and reason is None,
        "paused_reason": reason,
        "description": schedule.description,
        "describe": timing.describe(),
        "created_by": schedule.created_by,
        "updated_by": schedule.updated_by,
        "created_at": isoformat(schedule.created_at),
        "updated_at": isoformat(schedule.updated_at),
        "last_fire_at": isoformat(schedule.last_fire_at),
        "last_run_id": last.id if last else None,
        "last_run_at": isoformat(last.created_at) if last else None,
        "next_runs": [isoformat(t) for t in upcoming]
        if schedule.enabled and reason is None
        else [],
        "url": f"/api/schedules/{schedule.id}",
    }


def _last_run(schedule_id: int) -> Run | None:
    return db.session.scalar(
        select(Run)
        .where(Run.schedule_id == schedule_id)
        .order_by(Run.created_at.desc())
        .limit(1)
    )


# -- who may ---------------------------------------------------------------------


def may_manage(requester: Requester, task: str) -> bool:
    """Operators manage the schedules of tasks they may start; admins all."""
    role = requester.role
    if role is None or not role.allows(Role.OPERATOR):
        return False
    definition = task_registry().get(task)
    if definition is None:  # its task is gone: only an admin cleans it up
        return role.allows(Role.ADMIN)
    return role.allows(definition.role)


def check_manage(requester: Requester, task: str) -> None:
    if not may_manage(requester, task):
        who = (
            "; sign in first"
            if requester.role is None
            else f" (you are {requester.name}, {requester.role})"
        )
        raise NotAllowed(
            f"changing schedules of {task} needs a role that may start it" + who
        )


# -- changing ----------------------------------------------------------------------


def create_schedule(
    raw: Mapping[str, Any], requester: Requester, *, from_text: bool = False
) -> Schedule:
    """Save a new schedule from the caller's fields. Raises UnknownTask,
    NotAllowed, ValidationError or ScheduleNameTaken."""
    _refuse_unknown(raw, FIELDS)
    task = raw.get("task")
    if not isinstance(task, str) or not task:
        raise ValidationError({"task": "is required: the name of a task"})
    definition = task_registry().definition(task)
    check_manage(requester, definition.name)
    values = _validated(raw, definition, None, from_text=from_text)
    now = utcnow()
    schedule = Schedule(
        task=definition.name,
        created_by=requester.name,
        updated_by=requester.name,
        created_at=now,
        updated_at=now,
        **values,
    )
    _save(schedule)
    _log_change(schedule, "created", requester)
    return schedule


def update_schedule(
    schedule: Schedule,
    raw: Mapping[str, Any],
    requester: Requester,
    *,
    from_text: bool = False,
) -> Schedule:
    """Change any of EDITABLE. Raises NotAllowed or ValidationError."""
    check_manage(requester, schedule.task)
    _refuse_unknown(raw, EDITABLE)
    definition = task_registry().get(schedule.task)
    if definition is None and "params" in raw:
        raise ValidationError({"task": f"{schedule.task!r} no longer exists"})
    values = _validated(raw, definition, schedule, from_text=from_text)
    for key, value in values.items():
        setattr(schedule, key, value)
    schedule.updated_by = requester.name
    schedule.updated_at = utcnow()
    _save(schedule)
    changed = ", ".join(sorted(raw)) or "nothing"
    _log_change(schedule, f"changed ({changed})", requester)
    return schedule


def set_enabled(schedule: Schedule, enabled: bool, requester: Requester) -> Schedule:
    return update_schedule(schedule, {"enabled": enabled}, requester)


def delete_schedule(schedule: Schedule, requester: Requester) -> None:
    check_manage(requester, schedule.task)
    db.session.delete(schedule)
    db.session.commit()
    _log_change(schedule, "deleted", requester)


def run_now(schedule: Schedule, requester: Requester, *, source: str) -> Run:
    """Start the schedule's task with its parameters now, as the caller (paused
    or not): a start like any other, counted and limited, with the schedule's id."""
    run, _ = runs.start_run(
        schedule.task,
        schedule.params,
        source=source,
        requester=requester,
        schedule_id=schedule.id,
    )
    _log_change(schedule, f"run now (run {run.id})", requester)
    return run


def _save(schedule: Schedule) -> None:
    db.session.add(schedule)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ScheduleNameTaken(schedule.name) from None


def _log_change(schedule: Schedule, what: str, requester: Requester) -> None:
    log.info(
        "schedule %s (id %s, task %s) %s by %s",
        schedule.name,
        schedule.id,
        schedule.task,
        what,
        requester.name or "anonymous",
    )


# -- validation --------------------------------------------------------------------


def _refuse_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = {
        str(k): "is not a field of a schedule here (expected: "
        + ", ".join(allowed)
        + ")"
        for k in raw
        if k not in allowed
    }
    if unknown:
        raise ValidationError(unknown)


def _validated(
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
