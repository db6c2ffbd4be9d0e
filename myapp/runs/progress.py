"""Progress and the lease while a task body runs: `ProgressReporter` writes a run's
reports to its row (at most every TICK_SECONDS, the last one held back never lost)
and its heartbeat when the task says nothing, fenced by the attempt's claim.

The writes a task's own thread does not make (a held-back report, the heartbeat)
come from one ticker thread per process, not a thread started and joined per run.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from flask import current_app

from myapp.extensions import db
from myapp.models import utcnow
from myapp.per_process import PerProcess
from myapp.runs.errors import RunSuperseded
from myapp.runs.transitions import Claim, run_update
from myapp.runs.waiting import notify
from myapp.tasks import ProgressHook, RunCancelled

log = logging.getLogger("myapp.runs")

# How often the ticker looks at running reports: the shortest interval between
# two progress writes of one run.
TICK_SECONDS = 0.2


class ProgressReporter:
    """Writes progress to the run row, and keeps the run's lease, while the task body
    runs (`with reporter:`).

    Reports are written at most every `interval` seconds; one held back is written
    once the interval is up, so a task's last word ("starting", then minutes of
    work) is what the run shows. When the task says nothing, the heartbeat alone is
    written every `beat` seconds: a task need not report to keep its lease (the
    reaper takes a run silent for RUN_LEASE_SECONDS for one whose worker died).
    Those writes come from the process's ticker thread (`_Ticker`), which dies with
    its process, so a killed worker still goes quiet.

    Each write finds out about a cancel: once the row is no longer active, the
    task is stopped with RunCancelled (at its next report). With a `claim`, each
    write is also fenced: once a later attempt owns the run, the task is stopped
    with RunSuperseded and nothing more is written.
    """

    def __init__(
        self,
        run_id: str,
        hook: ProgressHook | None = None,
        interval: float = TICK_SECONDS,
        beat: float = 10.0,
        claim: Claim | None = None,
    ):
        self.run_id = run_id
        self.claim = claim
        self.hook = hook
        self.interval = interval
        self.beat = beat
        self.last: tuple[int, int, str] | None = None
        # The claim has just written the heartbeat: the first report can wait.
        self._written_at = time.monotonic()
        self._pending = False
        self._cancelled = False
        self._closed = False
        self._lock = threading.Lock()
        self._app = current_app._get_current_object()

    def __enter__(self) -> ProgressReporter:
        _ticker.get().reporters.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        _ticker.get().reporters.discard(self)
        # Wait for a write in flight, but not for long: a write held up by the
        # database must not hold the worker, and one that lands after the run
        # ended changes nothing (it only touches active runs).
        if self._lock.acquire(timeout=10):
            self._closed = True
            self._lock.release()
        else:
            self._closed = True

    def __call__(self, current: int, total: int, message: str) -> None:
        if self.claim is not None and self.claim.superseded:
            raise RunSuperseded(self.run_id, self.claim.attempt)
        if self._cancelled:
            raise RunCancelled(self.run_id)
        self.last = (current, total, message)
        if self.hook is not None:
            self.hook(current, total, message)
        with self._lock:
            if time.monotonic() - self._written_at < self.interval:
                self._pending = True  # written when the interval is up
                return
            active = self._write()
        if not active:
            if self.claim is not None:
                self.claim.check("progress")
            raise RunCancelled(self.run_id)

    def _write(self) -> bool:
        """The last report (or the heartbeat alone) into the row, under the lock;
        False when the run is no longer active."""
        # The next heartbeat is due `beat` after this one's time, not after its
        # write returned: on a slow link (each round trip hundreds of ms) the
        # row's heartbeat would otherwise age by beat + the write's duration.
        started = time.monotonic()
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self.last is not None:
            current, total, message = self.last
            values.update(
                state="PROGRESS",
                progress_current=current,
                progress_total=total,
                progress_message=message[:200],
            )
        statement, params = run_update(
            self.run_id, ("STARTED", "PROGRESS"), values, self.claim
        )
        result = db.session.execute(statement, params)
        db.session.commit()
        self._written_at = started
        self._pending = False
        if result.rowcount == 0:
            self._cancelled = True
        elif self.last is not None:
            notify(self.run_id)  # a heartbeat alone changes nothing a waiter sees
        return result.rowcount == 1

    def _due(self) -> bool:
        quiet = time.monotonic() - self._written_at
        superseded = self.claim is not None and self.claim.superseded
        return not (self._closed or self._cancelled or superseded) and (
            (self._pending and quiet >= self.interval) or quiet >= self.beat
        )

    def tick(self) -> None:
        """From the ticker thread: write a held-back report, or the heartbeat."""
        with self._lock:
            if not self._due():
                return
            # Its own app context: its own session and connection.
            with self._app.app_context():
                try:
                    claim = self.claim
                    # Refused and taken over: the task's thread raises
                    # RunSuperseded at its next report.
                    if not self._write() and claim and claim.taken_over():
                        claim.refused("heartbeat")
                except Exception as exc:  # the database away: try again later
                    db.session.rollback()
                    self._written_at = time.monotonic()
                    log.warning("run %s: progress not written: %s", self.run_id, exc)


class _Ticker:
    """One daemon thread per process for every running reporter's held-back reports
    and heartbeats, instead of a thread started (and joined) for each run."""

    def __init__(self) -> None:
        self.reporters: weakref.WeakSet[ProgressReporter] = weakref.WeakSet()
        threading.Thread(target=self._loop, name="run-progress", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            for reporter in list(self.reporters):
                reporter.tick()


_ticker = PerProcess(_Ticker)
