"""Following a run without a sleep loop: `GET /api/runs/<id>?wait=` and the CLI.

Whoever changes a run (the worker's claim, progress and finish, a cancel, the
reaper) publishes its id on the run's own Redis channel. A waiter subscribes, reads
the row once more (a change may land between its first read and the subscribe),
then blocks on the subscription until a message, the end of its time, or Redis
going away; it never polls the database in a loop.

A waiting request holds a web thread for its whole wait, so each process lets at
most `RUN_WAITERS_PER_PROCESS` requests wait at once (half of gunicorn's 4
threads by default); past that a request answers at
once with the run as it is (the client asks again), and `/healthz`, starts and
every other request keep their threads.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app

from myapp.extensions import db, get_redis
from myapp.models import Run

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30


def channel(run_id: str) -> str:
    return f"myapp:run:{run_id}"


def notify(run_id: str) -> None:
    """Tell the run's waiters it changed. Best effort: a waiter whose message is
    lost answers when its time is up, with the row as it is."""
    try:
        get_redis().publish(channel(run_id), "changed")
    except Exception as exc:
        log.debug("no change notice for run %s: %s", run_id, exc)


def waiting_init_app(app: Flask) -> None:
    bound = app.config["RUN_WAITERS_PER_PROCESS"]
    app.extensions["run_waiters"] = threading.BoundedSemaphore(bound)


def _snapshot(run: Run) -> tuple:
    return (
        run.state,
        run.progress_current,
        run.progress_total,
        run.progress_message,
    )


def _reread(run_id: str) -> Run | None:
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    # No transaction stays open while this request waits.
    db.session.commit()
    return run


def wait_for_change(run: Run, seconds: float, *, bounded: bool = True) -> Run:
    """`run` as soon as it differs from now (state or progress) or has finished,
    or as it is after `seconds`. With `bounded`, answers at once when this process
    already has its share of waiters."""
    if run.finished or seconds <= 0:
        return run
    before = _snapshot(run)
    slots: threading.BoundedSemaphore = current_app.extensions["run_waiters"]
    if bounded and not slots.acquire(blocking=False):
        return run
    deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel(run.id))
        while True:
            current = _reread(run.id)
            if current is None or current.finished or _snapshot(current) != before:
                return current or run
            left = deadline - time.monotonic()
            if left <= 0:
                return current
            # Blocks on the socket until a notice or the time left.
            pubsub.get_message(timeout=left)
    except Exception as exc:  # Redis away: answer with the row as it is
        log.warning("waiting on run %s stopped early: %s", run.id, exc)
        return _reread(run.id) or run
    finally:
        try:
            pubsub.close()
        finally:
            if bounded:
                slots.release()
