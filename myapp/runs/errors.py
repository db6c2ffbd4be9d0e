"""Why a run could not be started, cancelled or run. Each refusal carries the message
a user sees (and a StartRefused its machine-readable `code`); they know nothing of
HTTP: the web layer maps each class to a status (`myapp.web.errors`), Dash and the
CLI show the same text."""

from __future__ import annotations

from celery.exceptions import Ignore

from myapp.tasks.definition import RunCancelled


class StartRefused(Exception):
    """A start was refused by a limit; `str(exc)` is the user's message, `code`
    names the limit, `retry_after` (seconds) says when to try again if known."""

    code = "too_many_requests"
    retry_after: int | None = None


class TooManyActiveRuns(StartRefused):
    """MAX_ACTIVE_RUNS runs are already PENDING, STARTED, PROGRESS or RETRY."""

    code = "too_many_active_runs"

    def __init__(self, limit: int):
        super().__init__(f"{limit} runs are already active; try later")
        self.limit = limit


class TooManyActiveRunsOfTask(TooManyActiveRuns):
    """MAX_ACTIVE_RUNS_PER_TASK runs of this task are already active."""

    def __init__(self, task: str, limit: int):
        StartRefused.__init__(
            self, f"{limit} runs of {task} are already active; try later"
        )
        self.limit = limit
        self.task = task


class RateLimited(StartRefused):
    """START_RATE_LIMIT starts of this requester in the current window."""

    def __init__(self, limit: str, retry_after: int):
        super().__init__(f"too many starts (limit {limit}); try again later")
        self.retry_after = retry_after


class IdempotencyConflict(Exception):
    """An Idempotency-Key reused with another task or other parameters."""

    def __init__(self, key_run_id: str):
        super().__init__(
            "this Idempotency-Key was already used for a different task or "
            "different parameters"
        )
        self.run_id = key_run_id


class NotAllowed(Exception):
    """The requester's role does not allow this start or cancel; `str(exc)` says
    which role it needs."""


class RunFinished(Exception):
    """The run has already ended; it cannot be cancelled."""


class RunBusy(Exception):
    """Another delivery of this run holds a live lease: try again after it."""


class RunFailed(Exception):
    """A task's run ended FAILURE for a reason the task states (not a bug)."""


class RunSuperseded(RunCancelled, Ignore):
    """This attempt at a run was taken over by a later one (its lease lapsed, e.g.
    its host was cut off): stop working and write nothing more. The run is not
    failed or revoked: the later attempt owns it. As a Celery `Ignore`, the worker
    records no state for the message (the result is the current attempt's)."""

    def __init__(self, run_id: str, attempt: int):
        # Its args are its parameters: it is pickled from the pool process to the
        # worker's main process, which builds it again from them.
        super().__init__(run_id, attempt)
        self.run_id = run_id
        self.attempt = attempt

    def __str__(self) -> str:
        return f"run {self.run_id}: attempt {self.attempt} was taken over"
