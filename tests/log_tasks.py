"""Tasks that write to their run's log, for tests/test_run_logs.py (a team's module,
named in TASK_MODULES)."""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from myapp.tasks import RunContext, task


@task(role="operator")
def chatty(
    ctx: RunContext,
    lines: Annotated[int, Field(ge=0, le=100_000)] = 3,
    hold: Annotated[float, Field(ge=0, le=30)] = 0,
    width: Annotated[int, Field(ge=1, le=5000)] = 10,
) -> dict:
    """Log `lines` lines, then wait `hold` seconds (reporting progress), then one
    last line."""
    for i in range(lines):
        ctx.log.info("line %d %s", i + 1, "x" * (width - 1))
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        ctx.progress(0, 1, "holding")
        time.sleep(0.1)
    try:
        raise ValueError("it broke")
    except ValueError:
        ctx.log.exception("caught")
    ctx.log.warning("done")
    return {"logged": lines + 2}
