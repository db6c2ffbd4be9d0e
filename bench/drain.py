"""Worker drain: how many trivial runs per second one worker finishes, with the run
history recorded, against no-op tasks on a worker with the same settings.

All messages are queued first with no worker up; then the worker starts and drains
them. The rate runs from the first finish to the last, so worker start-up is not in
it. Ours are started by `runs.start_run`, the path every edge uses.
"""

from __future__ import annotations

import statistics

from bench.report import Result
from bench.runs_common import run_times, wait_all_finished
from bench.stack import Stack

NAME = "drain"


def run(stack: Stack, quick: bool) -> list[Result]:
    count = 300 if quick else 2000
    rounds = 1 if quick else 2
    noop: list[float] = []
    generate: list[float] = []
    raw: list[float] = []
    for _ in range(rounds):
        noop.append(_ours(stack, count, "noop", {}))
        raw.append(_baseline(stack, count))
        generate.append(_ours(stack, count, "generate_data", {"rows": 1, "seconds": 0}))
    note = (
        f"{count} queued runs of bench/tasks.py's `noop` (a team's task that does "
        f"nothing) drained by one prefork worker (Procfile settings), {rounds} "
        f"round(s), median; ours {_list(noop)}, raw no-op {_list(raw)} per second."
    )
    return [
        Result(
            "worker drain, no-op task (runs/s)",
            statistics.median(noop),
            statistics.median(raw),
            "runs/s",
            ">=",
            0.75,
            note,
        ),
        Result(
            "worker drain, generate_data rows=1 (runs/s)",
            statistics.median(generate),
            statistics.median(raw),
            "runs/s",
            note=f"context: the same with a data commit per run; {_list(generate)}.",
        ),
    ]


def _ours(stack: Stack, count: int, task: str, params: dict) -> float:
    from myapp import runs
    from myapp.users import Role

    stack.reset()
    app = stack.app()
    # As the command line does: a shell user, not rate-limited.
    requester = runs.Requester(name=None, role=Role.ADMIN)
    with app.app_context():
        for _ in range(count):
            runs.start_run(
                task,
                params,
                source="cli",
                requester=requester,
            )
    with stack.worker("ours"):
        wait_all_finished(stack, count, timeout=600)
    times = run_times(stack)
    bad = [t for t in times if t[3] != "SUCCESS"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {count} runs did not succeed: {bad[0]}")
    finished = sorted(t[2] for t in times)
    return (count - 1) / (finished[-1] - finished[0]).total_seconds()


def _baseline(stack: Stack, count: int) -> float:
    stack.reset()
    noop = stack.baseline_celery().tasks["noop"]
    results = [noop.delay() for _ in range(count)]
    with stack.worker("baseline"):
        done = [r.get(timeout=600) for r in results]
    done.sort()
    return (count - 1) / (done[-1] - done[0])


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)
