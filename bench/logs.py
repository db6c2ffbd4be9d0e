"""Run logs: a task that writes 10,000 lines to its run's log (ctx.log) against the
same task formatting the same lines without logging them.

Both sides are runs of bench/tasks.py's `log_lines` on one prefork worker,
alternating, one at a time; each is timed by its own row (started -> finished), so
the claim and the finish are on both sides and the difference is the logging: the
handler, the batched writes of the kept lines (RUN_LOG_MAX_LINES) and the count of
the dropped ones.
"""

from __future__ import annotations

import statistics

from bench.report import Result
from bench.stack import Stack

NAME = "logs"
LINES = 10_000


def run(stack: Stack, quick: bool) -> list[Result]:
    from myapp import runs
    from myapp.extensions import db
    from myapp.models import Run
    from myapp.users import Role
    from tests.support import wait_for

    rounds = 3 if quick else 10
    stack.reset()
    app = stack.app()
    requester = runs.Requester(name=None, role=Role.ADMIN)
    took: dict[bool, list[float]] = {True: [], False: []}

    def once(log: bool) -> float:
        with app.app_context():
            run, _ = runs.start_run(
                "log_lines",
                {"lines": LINES, "log": log},
                source="cli",
                requester=requester,
            )

            def finished() -> Run | None:
                db.session.expire_all()
                row = db.session.get(Run, run.id)
                return row if row is not None and row.finished else None

            row = wait_for(finished, timeout=120, interval=0.02)
            if row.state != "SUCCESS":
                raise RuntimeError(f"log_lines ended {row.state}: {row.error_message}")
            seconds = (row.finished_at - row.started_at).total_seconds()
            db.session.remove()
            return seconds

    with stack.worker("ours"):
        once(True), once(False)  # warm-up: imports, connections, the flusher
        for _ in range(rounds):
            took[True].append(once(True))
            took[False].append(once(False))
    ours, base = statistics.median(took[True]), statistics.median(took[False])
    note = (
        f"{rounds} alternating runs a side of `log_lines` ({LINES:,} lines; "
        f"1,000 kept, the rest counted as dropped), median of the row's started "
        f"-> finished: with logging {ours * 1000:.0f} ms, without "
        f"{base * 1000:.0f} ms."
    )
    return [
        Result(
            "a task logging 10,000 lines vs not logging them",
            ours,
            base,
            "s",
            "<=",
            1.5,
            note,
        )
    ]
