"""Schedules: tasks that beat starts on an interval or a cron expression, kept as
rows users edit while the app runs.

- `timing`: when a schedule fires (interval or cron in a time zone), from the row;
- `service`: create, edit, pause, delete, run now and read, with who may;
- `validation`: the checks made when a schedule is saved;
- `sender`: beat's pass over the table that sends the due fires.
"""

from __future__ import annotations

from myapp.models import Schedule
from myapp.schedules.service import (
    EDITABLE,
    FIELDS,
    ScheduleNameTaken,
    check_manage,
    create_schedule,
    delete_schedule,
    find_schedule,
    get_schedule,
    list_schedules,
    may_manage,
    paused_reason,
    run_now,
    schedule_json,
    set_enabled,
    timing_of,
    update_schedule,
)
from myapp.schedules.timing import Timing

__all__ = [
    "EDITABLE",
    "FIELDS",
    "Schedule",
    "ScheduleNameTaken",
    "Timing",
    "check_manage",
    "create_schedule",
    "delete_schedule",
    "find_schedule",
    "get_schedule",
    "list_schedules",
    "may_manage",
    "paused_reason",
    "run_now",
    "schedule_json",
    "set_enabled",
    "timing_of",
    "update_schedule",
]
