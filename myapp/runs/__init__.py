"""Runs: every execution of a task, whatever started it, is one row that is the
status of record.

- `admission`: the one way to start (or re-run) a run (allow, validate, limit,
  record, send);
- `permissions`: who may start and cancel what (`Requester`);
- `dispatch`: sending a recorded run's message, and the outbox;
- `execution`: the worker's side (claim, progress and heartbeat, finish);
- `transitions`: conditional state changes shared by all of them, and cancel;
- `reaper`: recovering runs whose worker or message was lost;
- `queries`: reading the history.
"""

from __future__ import annotations

from myapp.runs.admission import admission_init_app, rerun, start_run
from myapp.runs.adoption import Fire
from myapp.runs.dispatch import (
    FIRE_HEADER,
    SCHEDULE_HEADER,
    SOURCE_HEADER,
    dispatch,
    dispatch_pending,
)
from myapp.runs.errors import (
    IdempotencyConflict,
    NotAllowed,
    RateLimited,
    RunBusy,
    RunFailed,
    RunFinished,
    StartRefused,
    TooManyActiveRuns,
    TooManyActiveRunsOfTask,
)
from myapp.runs.execution import execute_run
from myapp.runs.logs import read_lines
from myapp.runs.permissions import Requester, may_cancel, may_start
from myapp.runs.progress import ProgressReporter
from myapp.runs.queries import RunFilter, get_run, list_runs
from myapp.runs.transitions import (
    cancel_run,
    fail_run,
    is_transient,
    mark_retry,
    revoke_run,
)
from myapp.runs.waiting import wait_for_change, waiting_init_app

__all__ = [
    "FIRE_HEADER",
    "SCHEDULE_HEADER",
    "SOURCE_HEADER",
    "Fire",
    "IdempotencyConflict",
    "NotAllowed",
    "ProgressReporter",
    "RateLimited",
    "Requester",
    "RunBusy",
    "RunFailed",
    "RunFilter",
    "RunFinished",
    "StartRefused",
    "TooManyActiveRuns",
    "TooManyActiveRunsOfTask",
    "admission_init_app",
    "cancel_run",
    "dispatch",
    "dispatch_pending",
    "execute_run",
    "fail_run",
    "get_run",
    "is_transient",
    "list_runs",
    "mark_retry",
    "may_cancel",
    "may_start",
    "read_lines",
    "rerun",
    "revoke_run",
    "start_run",
    "wait_for_change",
    "waiting_init_app",
]
