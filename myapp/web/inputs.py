"""What the JSON API and the HTML pages read from a request the same way: the run
or schedule a path names, the run filter of a query, an idempotency key. Each
caller answers a refusal in its own form (JSON, a page with the form again)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from myapp import runs, schedules
from myapp.edge import ApiError
from myapp.models import Run, Schedule
from myapp.tasks import ValidationError
from myapp.web.params import MAX_IDEMPOTENCY_KEY_LENGTH


def run_or_404(run_id: str) -> Run:
    """The run with that id; 404 `run_not_found` if there is none (a page for a
    person says "No run has id …")."""
    run = runs.get_run(run_id)
    if run is None:
        raise ApiError(404, "run_not_found", f"no run has id {run_id!r}")
    return run


def schedule_or_404(schedule_id: int) -> Schedule:
    """The schedule with that id; 404 `schedule_not_found` if there is none."""
    schedule = schedules.get_schedule(schedule_id)
    if schedule is None:
        raise ApiError(404, "schedule_not_found", f"no schedule has id {schedule_id}")
    return schedule


def run_filter(query: Mapping[str, Any]) -> runs.RunFilter:
    """The run filter of a query parsed with `params.RUNS_QUERY` (or a part of it
    holding every filter field); ValidationError names a value out of its choices."""
    return runs.RunFilter(**{name: query[name] for name in runs.RunFilter.FIELDS})


def idempotency_key(value: str | None, name: str) -> str | None:
    """`value` as an idempotency key (None: none was sent); ValidationError naming
    `name` (the header or form field it came in) unless it is 1 to
    MAX_IDEMPOTENCY_KEY_LENGTH characters."""
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationError(
            {name: f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"}
        )
    return value
