"""Memory: resident memory (RSS, summed over each process tree: gunicorn master and
workers; Celery main process and pool children) after sustained load, against the
same after a warm-up. A leak shows as a ratio well above 1.

The load is a mix a dashboard would send: a quarter of the requests start a trivial
run, the rest read runs, the run list and data pages. Bounded by count and time.
"""

from __future__ import annotations

import json

from bench.load import python_load
from bench.report import Result
from bench.runs_common import finished_count, run_times, wait_all_finished
from bench.stack import Stack

NAME = "memory"
MiB = 1024 * 1024
START = json.dumps({"rows": 1, "seconds": 0}).encode()
READS = (
    "/api/runs?limit=20",
    "/api/data?limit=100&sort=value&order=desc",
    "/api/runs/{run_id}",
    "/healthz",
)


def _requests(run_id: str):
    def make(i: int):
        if i % 4 == 0:  # a quarter of all requests start a run
            return "POST", "/api/tasks/generate_data/runs", START
        return "GET", READS[(i // 4 + i) % len(READS)].format(run_id=run_id), None

    return make


def _load(stack: Stack, url: str, run_id: str, count: int, limit: float) -> int:
    result = python_load(
        url,
        _requests(run_id),
        count=count,
        seconds=limit,
        concurrency=8,
        headers=stack.auth,
    )
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests: {dict(result.statuses)}")
    if result.requests < count:
        raise RuntimeError(
            f"only {result.requests} of {count} requests within {limit}s"
        )
    return result.requests


def run(stack: Stack, quick: bool) -> list[Result]:
    warm = 2_000 if quick else 4_000
    requests = 4_000 if quick else 20_000
    stack.reset()
    with stack.web("ours") as web, stack.worker("ours") as worker:
        first = python_load(
            web.url,
            lambda _i: ("POST", "/api/tasks/generate_data/runs", START),
            count=1,
            seconds=10,
            concurrency=1,
            headers=stack.auth,
        )
        if first.errors:
            raise RuntimeError("could not start a run")
        wait_all_finished(stack, 1, timeout=60)
        run_id = run_times(stack)[0][0]
        _load(stack, web.url, run_id, warm, 300)
        wait_all_finished(stack, finished_count(stack)[1], timeout=300)
        before = (web.rss(), worker.rss())
        _load(stack, web.url, run_id, requests, 900)
        runs = finished_count(stack)[1]
        wait_all_finished(stack, runs, timeout=600)
        after = (web.rss(), worker.rss())
    label = "quick: fewer than the issue's 20k requests / 5k runs; " if quick else ""
    note = (
        f"{label}warm-up {warm:,} requests, then {requests:,} requests "
        f"({requests // 4:,} of them start a run; {runs:,} runs in all), 8 "
        f"connections; RSS summed over the process tree."
    )
    return [
        Result(
            f"memory, web (gunicorn) after {requests:,} requests",
            after[0] / MiB,
            before[0] / MiB,
            "MiB",
            "<=",
            1.1,
            note,
        ),
        Result(
            f"memory, worker (Celery) after {requests // 4:,} runs",
            after[1] / MiB,
            before[1] / MiB,
            "MiB",
            "<=",
            1.1,
        ),
    ]
