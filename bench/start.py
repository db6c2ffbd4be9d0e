"""Start throughput: POST /api/tasks/generate_data/runs under gunicorn, against a bare
Flask endpoint that only calls `apply_async`, both under the same gunicorn config.

No worker consumes during the load: this measures the web side of a start (validate,
record the run, publish). Queued messages and PENDING runs are cleared after each
round so the next round starts from the same state.
"""

from __future__ import annotations

import statistics
from urllib.parse import urlsplit

from bench.load import have_wrk, python_load, wrk
from bench.report import Result
from bench.stack import Stack

NAME = "start"
BODY = '{"rows": 1, "seconds": 0}'
PATHS = {"ours": "/api/tasks/generate_data/runs", "baseline": "/runs"}
# gunicorn.conf.py serves 2 workers x 4 threads: 8 connections keep them all busy.
CONNECTIONS = 8


def _load(url: str, seconds: float, headers: dict[str, str]):
    if have_wrk():
        return wrk(
            url,
            method="POST",
            body=BODY,
            seconds=seconds,
            connections=CONNECTIONS,
            headers=headers,
        )
    body, path = BODY.encode(), urlsplit(url).path
    return python_load(
        url,
        lambda _i: ("POST", path, body),
        count=10**6,
        seconds=seconds,
        concurrency=CONNECTIONS,
        headers=headers,
    )


def run(stack: Stack, quick: bool) -> list[Result]:
    seconds = 3 if quick else 10
    rounds = 1 if quick else 3
    rates: dict[str, list[float]] = {"ours": [], "baseline": []}
    errors: dict[str, int] = {"ours": 0, "baseline": 0}
    tool = "wrk" if have_wrk() else "python"
    recorded = 0
    sent = 0
    stack.reset()
    with stack.web("ours") as ours, stack.web("baseline") as baseline:
        webs = {"ours": ours, "baseline": baseline}
        for _ in range(rounds):
            # Alternate, so drift in the machine's load hits both alike.
            for kind in ("ours", "baseline"):
                url = webs[kind].url + PATHS[kind]
                # Warm-up: imports, pools, JIT caches.
                _load(url, 1 if quick else 2, stack.auth)
                stack.reset()
                result = _load(url, seconds, stack.auth)
                rates[kind].append(result.rate)
                errors[kind] += result.errors
                if kind == "ours":
                    recorded += _count_runs(stack)
                    sent += result.requests
                stack.reset()
    ours_rate = statistics.median(rates["ours"])
    base_rate = statistics.median(rates["baseline"])
    note = (
        f"{tool}, {CONNECTIONS} connections, {rounds} x {seconds} s per side after "
        f"a warm-up, median shown (ours {_list(rates['ours'])}, baseline "
        f"{_list(rates['baseline'])} req/s); {recorded} runs recorded for {sent} "
        "requests; no worker consuming; MAX_ACTIVE_RUNS=1e9, START_RATE_LIMIT=off."
    )
    result = Result(
        "start throughput (POST a run)", ours_rate, base_rate, "req/s", ">=", 0.75, note
    )
    if errors["ours"] or errors["baseline"]:
        result.error = (
            f"non-2xx responses: ours {errors['ours']}, baseline "
            f"{errors['baseline']}: the rates are not comparable. " + note
        )
    return [result]


def _count_runs(stack: Stack) -> int:
    from sqlalchemy import func, select

    from myapp.extensions import db
    from myapp.models import Run

    with stack.app().app_context():
        return int(db.session.scalar(select(func.count()).select_from(Run)) or 0)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)
