"""A task for the fencing tests and the several-hosts rehearsal (a team's module,
named in TASK_MODULES): it logs and reports at every step, then commits its rows
fenced by its attempt, and says which attempt it was."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from pydantic import Field

from myapp.extensions import get_store
from myapp.tasks import RunContext, task

# In-process tests hold an attempt between two steps: `gate` names an Event here
# that the task waits for after its first step (worker processes never set one).
GATES: dict[str, threading.Event] = {}


@task(role="operator")
def paced(
    ctx: RunContext,
    rows: Annotated[int, Field(ge=0, le=100_000)] = 10,
    steps: Annotated[int, Field(ge=1, le=1000)] = 5,
    pause: Annotated[float, Field(ge=0, le=10)] = 0.2,
    gate: str = "",
    stage_pause: Annotated[float, Field(ge=0, le=10)] = 0,
) -> dict[str, Any]:
    """`steps` steps of `pause` seconds, each logged and reported, then `rows` rows
    appended to the data set (`stage_pause` seconds between staging chunks)."""
    for step in range(1, steps + 1):
        ctx.log.info("attempt %s step %d", ctx.attempt, step)
        ctx.progress(step, steps, f"step {step} of {steps}")
        if gate and step == 1:
            GATES[gate].wait(30)
        time.sleep(pause)
    store = get_store()
    made = store.random_rows(rows)

    def staged(done: int, total: int) -> None:
        # A long commit, for a rehearsal that cuts the host in the middle of it.
        ctx.progress(steps, steps, f"saving: {done} of {total} rows staged")
        time.sleep(stage_pause)

    commit = store.commit_run(ctx.run_id, made, on_staged=staged, attempt=ctx.attempt)
    ctx.progress(steps, steps, "saved")
    return {"rows": commit.count, "first_id": commit.first_id, "attempt": ctx.attempt}
