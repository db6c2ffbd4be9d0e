"""Helpers shared by the measurements that run tasks: read finished runs."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import func, select

from bench.stack import Stack


def finished_count(stack: Stack) -> tuple[int, int]:
    """(finished runs, all runs) in the history."""
    from myapp.extensions import db
    from myapp.models import FINISHED_STATES, Run

    with stack.app().app_context():
        done = db.session.scalar(
            select(func.count()).select_from(Run).where(Run.state.in_(FINISHED_STATES))
        )
        total = db.session.scalar(select(func.count()).select_from(Run))
        db.session.remove()
    return int(done or 0), int(total or 0)


def wait_all_finished(stack: Stack, expected: int, timeout: float) -> None:
    """Poll the history until `expected` runs have finished, or fail."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done, _ = finished_count(stack)
        if done >= expected:
            return
        time.sleep(0.5)
    raise RuntimeError(
        f"only {done} of {expected} runs finished within {timeout:.0f} s"
    )


def run_times(stack: Stack) -> list[tuple[str, datetime, datetime | None, str]]:
    """(id, created_at, finished_at, state) of every run."""
    from myapp.extensions import db
    from myapp.models import Run

    with stack.app().app_context():
        rows = db.session.execute(
            select(Run.id, Run.created_at, Run.finished_at, Run.state)
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]
