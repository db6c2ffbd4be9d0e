"""Following a run without a sleep loop: `GET /api/runs/<id>?wait=` and the CLI.

Whoever changes a run (the worker's claim, progress and finish, a cancel, the
reaper) publishes its id on the run's own Redis channel. The notice is sent by one
thread per process, after the change is committed, so no transition waits on a Redis
round trip for it (two per run, otherwise, on the worker's path). A waiter
subscribes, reads the row once more (a change may land between its first read and
the subscribe), then blocks on the subscription until a message, the end of its
time, or Redis going away; it never polls the database in a loop.

A waiting request holds a web thread for its whole wait, so each process lets at
most `RUN_WAITERS_PER_PROCESS` requests wait at once (half of gunicorn's 4
threads by default); past that a request answers at
once with the run as it is (the client asks again), and `/healthz`, starts and
every other request keep their threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import redis
from flask import Flask, current_app

from myapp.extensions import db, get_redis
from myapp.models import Run
from myapp.per_process import PerProcess

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30


def channel(run_id: str) -> str:
    return f"myapp:run:{run_id}"


# Notices waiting for the publisher thread; past this many (Redis away for long)
# new ones are dropped rather than held in memory.
MAX_PENDING_NOTICES = 10_000


def notify(run_id: str) -> None:
    """Tell the run's waiters it changed, soon. Best effort: a waiter whose notice
    is lost (Redis away, the process killed first) answers when its time is up,
    with the row as it is."""
    _publisher.get().send(get_redis(), channel(run_id))


class _Publisher:
    """One daemon thread per process publishing change notices, a burst of them in
    one pipeline (a draining worker changes hundreds of runs a second)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[redis.Redis, str]] = queue.SimpleQueue()
        threading.Thread(
            target=self._loop, name="run-change-notices", daemon=True
        ).start()

    def send(self, client: redis.Redis, name: str) -> None:
        if self._queue.qsize() < MAX_PENDING_NOTICES:
            self._queue.put((client, name))

    def _loop(self) -> None:
        while True:
            burst = [self._queue.get()]
            while not self._queue.empty() and len(burst) < 500:
                burst.append(self._queue.get_nowait())
            by_client: dict[int, tuple[redis.Redis, dict[str, None]]] = {}
            for client, name in burst:
                by_client.setdefault(id(client), (client, {}))[1][name] = None
            for client, names in by_client.values():
                try:
                    pipe = client.pipeline(transaction=False)
                    for name in names:
                        pipe.publish(name, "changed")
                    pipe.execute()
                except Exception as exc:
                    log.debug("%d change notices not sent: %s", len(names), exc)


_publisher = PerProcess(_Publisher)


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
