"""Start throughput: POST /api/tasks/generate_data/runs under gunicorn, against a bare
Flask endpoint that only calls `apply_async`, both under the same gunicorn config;
and, for context, against an endpoint that also checks the token and commits a row
(`/recorded-runs` in bench/baseline.py): the part of a start no design can skip.

No worker consumes during the load: this measures the web side of a start (validate,
record the run, publish). Queued messages and PENDING runs are cleared after each
round so the next round starts from the same state.
"""

from __future__ import annotations

import statistics
from urllib.parse import urlsplit

from bench.baseline import clear_recorded, prepare_recorded
from bench.load import have_wrk, python_load, wrk
from bench.report import Result
from bench.stack import Stack

NAME = "start"
BODY = '{"rows": 1, "seconds": 0}'
PATHS = {
    "ours": "/api/tasks/generate_data/runs",
    "baseline": "/runs",
    "recorded": "/recorded-runs",
}
KINDS = tuple(PATHS)
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
    # Many short rounds, alternating, median: a shared machine's bursts of noise
    # spoil a round or two, not the figure.
    seconds = 3 if quick else 6
    rounds = 1 if quick else 5
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: dict[str, int] = dict.fromkeys(KINDS, 0)
    tool = "wrk" if have_wrk() else "python"
    recorded = 0
    sent = 0
    stack.reset()
    user = stack.user()
    prepare_recorded(stack.database_url, user.token, user.name)
    with stack.web("ours") as ours, stack.web("baseline") as baseline:
        webs = {"ours": ours, "baseline": baseline, "recorded": baseline}
        for _ in range(rounds):
            # Alternate, so drift in the machine's load hits every side alike.
            for kind in KINDS:
                url = webs[kind].url + PATHS[kind]
                # Warm-up: imports, pools, JIT caches.
                _load(url, 1 if quick else 2, stack.auth)
                stack.reset()
                clear_recorded(stack.database_url)
                result = _load(url, seconds, stack.auth)
                rates[kind].append(result.rate)
                errors[kind] += result.errors
                if kind == "ours":
                    recorded += _count_runs(stack)
                    sent += result.requests
                stack.reset()
    clear_recorded(stack.database_url)
    median = {kind: statistics.median(rates[kind]) for kind in KINDS}
    note = (
        f"{tool}, {CONNECTIONS} connections, {rounds} x {seconds} s per side after "
        f"a warm-up, median shown (ours {_list(rates['ours'])}, baseline "
        f"{_list(rates['baseline'])}, recording baseline "
        f"{_list(rates['recorded'])} req/s); {recorded} runs recorded for {sent} "
        "requests; no worker consuming; MAX_ACTIVE_RUNS=1e9, START_RATE_LIMIT=off."
    )
    results = [
        Result(
            "start throughput (POST a run)",
            median["ours"],
            median["baseline"],
            "req/s",
            note="context: against a bare apply_async endpoint that records "
            "nothing. " + note,
        ),
        Result(
            "start throughput vs an endpoint that checks the token and commits a "
            "row (SQLAlchemy Core) before apply_async",
            median["ours"],
            median["recorded"],
            "req/s",
            ">=",
            0.85,
            "the work every start must do (the outbox promise: the row is committed "
            "before 202); the same rounds as the row above.",
        ),
    ]
    if any(errors.values()):
        for result in results:
            result.error = (
                "non-2xx responses: "
                + ", ".join(f"{kind} {n}" for kind, n in errors.items())
                + ": the rates are not comparable. "
                + note
            )
    return results


def _count_runs(stack: Stack) -> int:
    from sqlalchemy import func, select

    from myapp.extensions import db
    from myapp.models import Run

    with stack.app().app_context():
        return int(db.session.scalar(select(func.count()).select_from(Run)) or 0)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)
