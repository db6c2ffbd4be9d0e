"""The benchmark's own tasks, declared as a team declares its own and named in
TASK_MODULES by bench.stack: the overhead a run adds to a task is measured on a
task that does nothing."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from myapp.tasks import RunContext, task


@task(role="operator")
def noop(ctx: RunContext) -> None:
    """Do nothing: what is left is the cost of a run."""


@task(role="operator")
def log_lines(
    ctx: RunContext,
    lines: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000,
    log: bool = True,
) -> int:
    """Format `lines` lines, writing them to the run's log when `log` is true."""
    total = 0
    for i in range(lines):
        if log:
            ctx.log.info("line %d of %d", i, lines)
        else:
            total += len(f"line {i} of {lines}")
    return total
