"""Admission: the one way every edge starts a run.

API, HTML form, CLI, Dash (both modes) and re-runs all call `start_run`. It
checks that the requester's role may start the task, validates the parameters
through the task's definition, honours an Idempotency-Key, applies every limit
(START_RATE_LIMIT per user, MAX_ACTIVE_RUNS, MAX_ACTIVE_RUNS_PER_TASK), commits the
PENDING row (with who started it) and only then sends its message. A refusal is a
`NotAllowed` or a `StartRefused` that carries its own message.

Beat and other Celery clients send messages without a row; the worker adopts those
(`execution`): they are the schedule and trusted code, not users to limit.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Flask, current_app
from sqlalchemy import (
    Insert,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError

from myapp.extensions import db
from myapp.models import ACTIVE_STATES, Run, utcnow
from myapp.ratelimit import RateLimit, RateLimitExceeded
from myapp.redis_clients import redis_target
from myapp.runs.dispatch import send, undispatched
from myapp.runs.errors import (
    IdempotencyConflict,
    RateLimited,
    TooManyActiveRuns,
    TooManyActiveRunsOfTask,
)
from myapp.runs.permissions import Requester, check_start
from myapp.runs.transitions import log_transition
from myapp.tasks import TaskDefinition, get_definition

log = logging.getLogger("myapp.runs")


def start_run(
    task: str,
    raw_params: Mapping[str, Any] | None,
    *,
    source: str,
    requester: Requester,
    idempotency_key: str | None = None,
    from_text: bool = False,
    send_message: bool = True,
    schedule_id: int | None = None,
) -> tuple[Run, bool]:
    """Admit a run for `requester`: check their role, validate, limit, record it,
    then send its message.

    Returns (run, created); with an Idempotency-Key already used for the same task
    and parameters the first run comes back and `created` is False. Raises
    UnknownTask, NotAllowed, ValidationError, IdempotencyConflict or a StartRefused.

    `send_message=False` hands the run to a Dash background job instead of a Celery
    message: the row is marked dispatched, and if no job ever claims it the reaper
    sends it as a message (REDISPATCH_SECONDS). `schedule_id` names the schedule
    a user runs now.
    """
    definition = get_definition(task)
    # Before anything else: a caller who may not start the task learns nothing
    # about its parameters or the limits.
    check_start(requester, definition)
    params = definition.validate(raw_params, from_text=from_text)
    if idempotency_key is not None:
        existing = _by_idempotency_key(idempotency_key)
        if existing is not None:
            return _same_request(existing, definition, params, requester), False
    _limit_rate(requester)
    run = _insert(
        definition, params, source, idempotency_key, requester.name, schedule_id
    )
    if run is None:  # the same key committed by a concurrent request
        existing = _by_idempotency_key(idempotency_key or "")
        assert existing is not None
        return _same_request(existing, definition, params, requester), False
    if send_message and not send(run.id, definition.name, params, source):
        undispatched(run.id)
    return run, True


def rerun(
    run: Run,
    *,
    source: str,
    requester: Requester,
    idempotency_key: str | None = None,
) -> tuple[Run, bool]:
    """Start a new run of `run`'s task with its parameters: the same checks as any
    start (role, validation against today's bounds, every limit). Returns what
    `start_run` does."""
    return start_run(
        run.task,
        run.params,
        source=source,
        requester=requester,
        idempotency_key=idempotency_key,
    )


def _same_request(
    existing: Run,
    definition: TaskDefinition,
    params: dict[str, Any],
    requester: Requester,
) -> Run:
    """A key names one request of one user: reusing it for another request is a
    client bug, and another user's key is not theirs to replay."""
    if (
        existing.task != definition.name
        or existing.params != params
        or existing.created_by != requester.name
    ):
        raise IdempotencyConflict(existing.id)
    return existing


# The columns a start writes; the others start empty.
_STARTED = (
    "id",
    "task",
    "params",
    "source",
    "state",
    "attempts",
    "idempotency_key",
    "created_by",
    "created_at",
    "dispatched_at",
    "schedule_id",
)


@functools.cache
def _insert_if_room() -> Insert:
    """INSERT INTO runs … SELECT :values WHERE MAX_ACTIVE_RUNS and
    MAX_ACTIVE_RUNS_PER_TASK leave room for one more run.

    The limits are checked by the INSERT itself, so a start is one statement (and
    on SQLite the counts and the insert happen under the same write lock). Each
    count reads at most its limit's worth of index entries (a LIMIT inside it), so
    a start costs the same with a backlog of thousands of queued runs as with
    none. The task's own count is evaluated only when the total has reached the
    task's limit (a task cannot have more active runs than there are in all).
    Built once: building a statement costs as much as running it.
    """
    runs = Run.__table__
    is_active = runs.c.state.in_(ACTIVE_STATES)
    max_active = bindparam("max_active")
    per_task = bindparam("max_active_per_task")
    active = (
        select(func.count().label("n"))
        .select_from(
            select(literal_column("1"))
            .where(is_active)
            .limit(max_active)
            .subquery("capped")
        )
        .subquery("active")
    )
    of_task = (
        select(func.count())
        .select_from(
            select(literal_column("1"))
            .where(is_active, runs.c.task == bindparam("task"))
            .limit(per_task)
            .subquery("capped_task")
        )
        .scalar_subquery()
    )
    room = and_(
        active.c.n < max_active,
        or_(active.c.n < per_task, of_task < per_task),
    )
    values = select(*(bindparam(name, type_=runs.c[name].type) for name in _STARTED))
    # RETURNING says whether the row went in (drivers differ on rowcount here).
    return (
        insert(runs)
        .from_select(_STARTED, values.select_from(active).where(room))
        .returning(runs.c.id)
    )


def _refuse_for_active_runs(definition: TaskDefinition) -> NoReturn:
    """Raise the limit a start ran into, counted again to name it."""
    config = current_app.config
    active, of_task = db.session.execute(
        select(func.count(), func.count().filter(Run.task == definition.name)).where(
            Run.state.in_(ACTIVE_STATES)
        )
    ).one()
    if (
        active < config["MAX_ACTIVE_RUNS"]
        and of_task >= config["MAX_ACTIVE_RUNS_PER_TASK"]
    ):
        raise TooManyActiveRunsOfTask(
            definition.name, config["MAX_ACTIVE_RUNS_PER_TASK"]
        )
    raise TooManyActiveRuns(config["MAX_ACTIVE_RUNS"])


def _insert(
    definition: TaskDefinition,
    params: dict[str, Any],
    source: str,
    idempotency_key: str | None,
    created_by: str | None,
    schedule_id: int | None = None,
) -> Run | None:
    """Commit the PENDING row if the active-run limits leave room (else raise
    TooManyActiveRuns or TooManyActiveRunsOfTask); None if a concurrent request took
    the same Idempotency-Key.

    One INSERT … SELECT … WHERE <room> statement; the Run returned is built from
    the values written (not attached to the session), so the 202 body needs no
    second read.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "task": definition.name,
        "params": params,
        "source": source,
        "state": "PENDING",
        "attempts": 0,
        "idempotency_key": idempotency_key,
        "created_by": created_by,
        "created_at": now,
        # A run about to be sent is marked dispatched in the same commit, saving a
        # second commit per start; a failed send clears the mark (the outbox sweeper
        # then sends it), and a crash in between is resent by the reaper
        # (REDISPATCH_SECONDS: dispatched, still PENDING, no message queued).
        "dispatched_at": now,
        "schedule_id": schedule_id,
    }
    config = current_app.config
    limits = {
        "max_active": config["MAX_ACTIVE_RUNS"],
        "max_active_per_task": config["MAX_ACTIVE_RUNS_PER_TASK"],
    }
    try:
        inserted = db.session.execute(_insert_if_room(), values | limits).first()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if idempotency_key is None:
            raise
        return None
    if inserted is None:
        _refuse_for_active_runs(definition)
    log_transition(values["id"], definition.name, source, "PENDING", 0)
    return Run(**values)


def _by_idempotency_key(key: str) -> Run | None:
    return db.session.scalar(select(Run).where(Run.idempotency_key == key))


# -- START_RATE_LIMIT -----------------------------------------------------------


def _limit_rate(requester: Requester) -> None:
    if requester.limit_key is None:
        return
    try:
        current_app.extensions["start_limiter"].hit(requester.limit_key)
    except RateLimitExceeded as exc:
        raise RateLimited(exc.limit, exc.retry_after) from None


def admission_init_app(app: Flask) -> None:
    app.extensions["start_limiter"] = RateLimit(
        str(app.config["START_RATE_LIMIT"]), redis_target(app.config), scope="start"
    )
