"""Schedules as users see them: create, edit, pause, resume, delete, run now, read.

Every edge (API, pages, command line) calls these with a `Requester`; the rules
live here once:

- viewers read; operators manage the schedules of tasks they may start, whoever
  made them; admins manage all;
- parameters are validated by the task's declaration when saved (the same messages
  as a start, under `params.<name>`), the cron text by cronsim, the time zone
  against the IANA database; each problem is a ValidationError naming its field
  (`validation`);
- a schedule whose task is gone, or whose creator may no longer start it, is
  paused with the reason (`paused_reason`), which beat honours;
- every change is one INFO line naming who made it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from myapp import runs
from myapp.extensions import db
from myapp.models import Run, Schedule, User, isoformat, utcnow
from myapp.runs import NotAllowed, Requester
from myapp.schedules.timing import Timing
from myapp.schedules.validation import refuse_unknown, validated
from myapp.tasks import ValidationError, task_registry
from myapp.users import Role

log = logging.getLogger("myapp.schedules")

EDITABLE = ("params", "every_s", "cron", "timezone", "enabled", "description")
FIELDS = ("name", "task", *EDITABLE)
MAX_ID = 2**31 - 1


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
    refuse_unknown(raw, FIELDS)
    task = raw.get("task")
    if not isinstance(task, str) or not task:
        raise ValidationError({"task": "is required: the name of a task"})
    definition = task_registry().definition(task)
    check_manage(requester, definition.name)
    values = validated(raw, definition, None, from_text=from_text)
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
    refuse_unknown(raw, EDITABLE)
    definition = task_registry().get(schedule.task)
    if definition is None and "params" in raw:
        raise ValidationError({"task": f"{schedule.task!r} no longer exists"})
    values = validated(raw, definition, schedule, from_text=from_text)
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
