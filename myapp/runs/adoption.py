"""Runs sent without a row: beat's fires and other Celery clients' messages are
adopted by the worker that receives them (`get_or_adopt`), with the source their
message names. A schedule's fire also names its schedule and fire time (`Fire`);
the database refuses a second run of one fire (two beats, a message sent twice),
and that message is dropped without running (`DuplicateFire`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from myapp.extensions import db
from myapp.models import SOURCES, Run, Schedule, utcnow
from myapp.runs.transitions import log_run
from myapp.tasks import TaskDefinition


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule, as its message's headers name it."""

    schedule_id: int
    at: datetime  # naive UTC

    @classmethod
    def from_headers(cls, schedule_id: Any, fire_at: Any) -> Fire | None:
        """The fire named by a message's headers; None when they are absent or not
        what beat writes (then the run is adopted as a plain one)."""
        try:
            moment = datetime.fromisoformat(str(fire_at).replace("Z", "+00:00"))
            number = int(schedule_id)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return cls(number, moment)


class DuplicateFire(Exception):
    """Another run already stands for this fire of this schedule."""


def get_or_adopt(
    definition: TaskDefinition,
    run_id: str,
    kwargs: Mapping[str, Any],
    source: str,
    adopt: bool,
    fire: Fire | None = None,
) -> Run | None:
    """The run's row; a run sent by beat or another Celery client gets one now. A
    schedule's fire is started as the schedule's creator; DuplicateFire when that
    fire already has its run."""
    run = db.session.get(Run, run_id)
    if run is not None or not adopt:
        return run
    owner = None
    if fire is not None:
        schedule = db.session.get(Schedule, fire.schedule_id)
        owner = schedule.created_by if schedule is not None else None
    run = Run(
        id=run_id,
        task=definition.name,
        params=_jsonable(kwargs),
        source=source if source in SOURCES else "external",
        state="PENDING",
        attempts=0,
        created_at=utcnow(),
        dispatched_at=utcnow(),
        created_by=owner,
        schedule_id=fire.schedule_id if fire else None,
        fire_at=fire.at if fire else None,
    )
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a duplicate delivery adopted it first
        run = db.session.get(Run, run_id)
        if run is None:  # another message of the same fire did
            raise DuplicateFire(run_id) from None
        return run
    log_run(run)
    return run


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as sent by another client may hold anything; keep what JSON can."""
    try:
        return json.loads(json.dumps(dict(value), default=str))
    except (TypeError, ValueError):
        return {}
