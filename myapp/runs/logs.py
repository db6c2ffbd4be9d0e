"""A run's own log: what a task writes with `ctx.log`, kept with the run.

`ctx.log` is a plain `logging.Logger` (not registered with `logging.getLogger`, so a
worker that runs a million runs keeps no million loggers) whose one handler buffers
the run's lines in memory. A flusher thread of the worker process writes every
buffer in one multi-row INSERT each `FLUSH_SECONDS`, on its own connection, so a
task that logs 10,000 lines a second costs the database a few statements, never one
commit per line, and never blocks the task on a database write. When the task
returns or raises, what is left is written before the run's final state, so a
reader who sees the run finished sees all of its lines.

At most RUN_LOG_MAX_LINES lines are kept (the first ones: a reader following the
log never sees a line disappear); the rest are counted in `runs.log_dropped`. A
line is cut at `MAX_LINE` characters. An exception logged with `ctx.log.exception`
adds its type and message, not its traceback: these lines are shown to everyone who
may read the run.

Each write is fenced by the attempt's claim: its last statement touches the run
row where `attempts` is still this attempt's number (which also orders it against a
takeover's claim), and the write is rolled back when that matches no row. A
taken-over attempt's lines are dropped, so the current attempt's numbering is never
interleaved with them.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app
from sqlalchemy import Connection, Engine, func, insert, select, update

from myapp.extensions import db
from myapp.models import Run, RunLogBatch
from myapp.per_process import PerProcess
from myapp.runs.transitions import Claim

log = logging.getLogger(__name__)

MAX_LINE = 1000
FLUSH_SECONDS = 0.3


class _Superseded(Exception):
    """A later attempt owns the run: roll this attempt's log write back."""


class RunLogHandler(logging.Handler):
    """Buffers one run's lines; `flush` writes them (from the flusher thread, and
    once more at the end of the run).

    Adding a line takes no lock: a task may log from several threads, thousands of
    lines a second. Each line takes the next number of an `itertools.count` (one
    atomic step in CPython); a kept one is appended to a deque (atomic too), one
    past the limit steps a second count, of dropped lines.
    """

    def __init__(
        self,
        run_id: str,
        engine: Engine,
        max_lines: int,
        claim: Claim | None = None,
    ):
        super().__init__(logging.DEBUG)
        self.run_id = run_id
        self.claim = claim
        self.engine = engine
        self.max_lines = max_lines
        self.steps = itertools.count(1)  # numbers the lines of this attempt
        self.drops = itertools.count()  # steps once per line past the limit
        self._drops_read = 0  # steps taken by reading it (`_dropped`)
        # Lines earlier attempts kept, read at the first write (a run that logs
        # nothing costs no query).
        self.base: int | None = None
        # Past the limit: lines counted by this attempt (`dropped`) or refused by
        # the write, for lines an earlier attempt's count pushed over (`refused`).
        self.dropped = 0
        self.refused = 0
        self._written_dropped = 0
        # (seq, epoch milliseconds, level number, text): a line is stored as it
        # was added and made readable when read (`read_lines`), so the writing
        # side, in the task's worker, does the least.
        self.pending: deque[tuple[int, int, int, str]] = deque()
        self._flushing = threading.Lock()
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        """A record from a logger this handler was added to (ctx.log itself
        makes none)."""
        self.add(
            record.levelno, record.msg, record.args, record.exc_info, record.created
        )

    def add(
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any = None,
        created: float | None = None,
    ) -> None:
        seq = next(self.steps)
        if seq > self.max_lines:
            next(self.drops)
        else:
            self.pending.append(
                (
                    seq,
                    time.time_ns() // 1_000_000
                    if created is None
                    else int(created * 1000),
                    level,
                    _text(msg, args, exc_info)[:MAX_LINE],
                )
            )

    def _dropped(self) -> int:
        """Lines this attempt dropped so far (under `_flushing`): a count can only
        be read by stepping it, so the reads' own steps are taken off."""
        steps = next(self.drops) - self._drops_read
        self._drops_read += 1
        return steps

    def flush(self) -> None:
        with self._flushing:  # the flusher and the run's end never write twice
            self.dropped = self._dropped()
            lines = []
            while self.pending:  # lines another thread adds meanwhile wait
                lines.append(self.pending.popleft())
            lines.sort()  # two threads may append out of turn
            if not lines and self.dropped + self.refused == self._written_dropped:
                return
            if self.claim is not None and self.claim.superseded:
                return  # a later attempt owns the run: its log is not ours
            try:
                with self.engine.begin() as connection:
                    self._write(connection, lines)
            except _Superseded:
                assert self.claim is not None
                self.claim.refused("log lines")
                return
            except Exception as exc:
                # Keep them for the next flush; the run goes on either way.
                self.pending.extendleft(reversed(lines))
                if not self._failed:
                    log.warning(
                        "run %s: log lines not written yet: %s", self.run_id, exc
                    )
                    self._failed = True
                return
            self._failed = False

    def _write(
        self, connection: Connection, lines: list[tuple[int, int, int, str]]
    ) -> None:
        if self.base is None:
            # A later attempt (a retry, a takeover) goes on after the lines kept.
            self.base = connection.scalar(
                select(func.coalesce(func.max(RunLogBatch.last_seq), 0)).where(
                    RunLogBatch.run_id == self.run_id
                )
            )
        base = self.base or 0
        kept = (
            lines  # the common case: the first attempt, every line under the limit
            if base == 0 and (not lines or lines[-1][0] <= self.max_lines)
            else [
                (base + seq, at, level, message)
                for seq, at, level, message in lines
                if base + seq <= self.max_lines
            ]
        )
        if kept:
            connection.execute(
                insert(RunLogBatch).values(
                    run_id=self.run_id,
                    first_seq=kept[0][0],
                    last_seq=kept[-1][0],
                    lines=kept,
                )
            )
        refused = self.refused + len(lines) - len(kept)
        dropped = self.dropped + refused
        count = dropped if dropped != self._written_dropped else Run.log_dropped
        if self.claim is not None:
            # The fence, last: it row-locks the run only until the commit (a
            # takeover's claim waits that long), and once a later attempt has
            # claimed the run it matches nothing and the batch is rolled back.
            owned = connection.execute(
                update(Run).where(self.claim.current()).values(log_dropped=count)
            )
            if owned.rowcount == 0:
                raise _Superseded
        elif dropped != self._written_dropped:
            connection.execute(
                update(Run).where(Run.id == self.run_id).values(log_dropped=dropped)
            )
        # Only once the transaction is in: a failed write keeps its lines.
        self.refused = refused
        self._written_dropped = dropped


class RunLogger(logging.Logger):
    """`ctx.log`: a Logger that writes each call straight into its run's buffer.

    It makes no LogRecord (no caller lookup, no process and thread names) and its
    level methods go straight to the buffer: that is most of what a logging call
    costs, and a task may log thousands of lines a second. Lines past the limit
    are only counted. Handlers added to it are not called; use a logger of your
    own for the worker's log.
    """

    def __init__(self, handler: RunLogHandler):
        super().__init__(f"myapp.run.{handler.run_id}", logging.INFO)
        self.propagate = False
        self.run_handler = handler
        self._add = handler.add

    def _log(  # type: ignore[override]
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any = None,
        extra: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
    ) -> None:
        self._add(level, msg, args, exc_info)

    def debug(self, msg: object, *args: Any, exc_info: Any = None, **_: Any) -> None:
        if self.level <= logging.DEBUG:
            self._add(logging.DEBUG, msg, args, exc_info)

    def info(self, msg: object, *args: Any, exc_info: Any = None, **_: Any) -> None:
        if self.level <= logging.INFO:
            self._add(logging.INFO, msg, args, exc_info)

    def warning(self, msg: object, *args: Any, exc_info: Any = None, **_: Any) -> None:
        if self.level <= logging.WARNING:
            self._add(logging.WARNING, msg, args, exc_info)

    def error(self, msg: object, *args: Any, exc_info: Any = None, **_: Any) -> None:
        if self.level <= logging.ERROR:
            self._add(logging.ERROR, msg, args, exc_info)


class _Flusher:
    """One daemon thread per process writing every open run log's buffer."""

    def __init__(self) -> None:
        self.handlers: weakref.WeakSet[RunLogHandler] = weakref.WeakSet()
        self.wake = threading.Event()
        threading.Thread(target=self._loop, name="run-log-flusher", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            for handler in list(self.handlers):
                handler.flush()


_flusher = PerProcess(_Flusher)


@contextmanager
def run_log(run_id: str, claim: Claim | None = None) -> Iterator[logging.Logger]:
    """`ctx.log` for one attempt at a run; its lines are all written on exit, while
    `claim` (when given) still owns the run."""
    handler = RunLogHandler(
        run_id, db.engine, current_app.config["RUN_LOG_MAX_LINES"], claim
    )
    logger = RunLogger(handler)
    flusher = _flusher.get()
    flusher.handlers.add(handler)
    try:
        yield logger
    except BaseException:
        # Before the last write: on SQLite the task's own open transaction would
        # hold the lock the log's connection needs.
        db.session.rollback()
        raise
    else:
        db.session.commit()
    finally:
        flusher.handlers.discard(handler)
        handler.flush()
        logger.removeHandler(handler)


def read_lines(run: Run, after: int = 0, limit: int = 500) -> dict[str, Any]:
    """The run's lines after seq `after` (at most about `limit`), as the API
    answers them."""
    batches = db.session.scalars(
        select(RunLogBatch.lines)
        .where(RunLogBatch.run_id == run.id, RunLogBatch.last_seq > after)
        .order_by(RunLogBatch.first_seq)
        .limit(max(1, limit // 50))
    ).all()
    lines = [
        {"seq": seq, "at": _iso(at), "level": _level(level), "message": message}
        for batch in batches
        for seq, at, level, message in batch
        if seq > after
    ][:limit]
    return {
        "lines": lines,
        "next": lines[-1]["seq"] if lines else after,
        "dropped": run.log_dropped or 0,
    }


def _text(msg: object, args: Any, exc_info: Any) -> str:
    """A line's text: the message with its arguments, and an exception's type and
    message, never its traceback (readers of the run see this)."""
    try:
        message = str(msg) % args if args else str(msg)
    except Exception:  # a bad format string is the task's bug, not a crash
        message = f"{msg} {args!r}"
    if exc_info:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, BaseException):
            message += f" ({type(exc).__name__}: {exc})"
    return message


def _iso(at: int | str) -> str:
    """A line's time (epoch milliseconds) as the API writes times (ISO 8601 UTC,
    milliseconds). Lines written before 2026-12 hold the text already."""
    if isinstance(at, str):
        return at
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at // 1000))
    return f"{seconds}.{at % 1000:03d}Z"


def _level(level: int | str) -> str:
    """A line's level number as its name (text already in older lines)."""
    return level if isinstance(level, str) else logging.getLevelName(level)[:10]
