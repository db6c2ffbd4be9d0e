"""The biggest run (MAX_ROWS_PER_RUN rows): how long another client waits on Redis
while it commits onto the 1M-row data set, and what a value-sorted page within it
costs against the same page over the whole data set.

The other client is a separate process pinging the same redis-server every
millisecond (a thread would wait on this process's GIL while the commit packs its
rows); its idle latencies, measured just before, are the baseline. The commit is
`DataStore.commit_run`, the worker's own call: staging, publishing and indexing.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid

from bench.dataset import fill, time_page
from bench.load import percentile
from bench.report import Result
from bench.stack import DATA_DB, Stack
from myapp.store import DataStore

NAME = "bigrun"
ROWS = 100_000  # MAX_ROWS_PER_RUN's default
BIG = 1_000_000
STALL_LIMIT_MS = 50.0
PAGE_RATIO_LIMIT = 1.5

# Prints "ready", then pings until told "stop" on stdin, printing each phase's
# latencies (seconds) as one JSON line when told "mark" or "stop".
PINGER = """
import json, sys, threading, time, redis
client = redis.Redis.from_url(sys.argv[1])
client.ping()
latencies, lock, commands = [], threading.Lock(), []
def listen():
    for line in sys.stdin:
        with lock:
            commands.append(line.strip())
threading.Thread(target=listen, daemon=True).start()
print("ready", flush=True)
while True:
    with lock:
        command = commands.pop(0) if commands else None
    if command:
        print(json.dumps(latencies), flush=True)
        latencies = []
        if command == "stop":
            break
    started = time.perf_counter()
    client.ping()
    latencies.append(time.perf_counter() - started)
    time.sleep(0.001)
"""


def run(stack: Stack, quick: bool) -> list[Result]:
    big = fill(stack, BIG)
    idle, during, seconds, run_id = _stall(stack, big, idle_seconds=2 if quick else 5)
    return [
        *_stall_results(idle, during, seconds),
        *_page_results(stack, big, run_id, samples=150 if quick else 500),
    ]


def _stall(
    stack: Stack, big: DataStore, idle_seconds: float
) -> tuple[list[float], list[float], float, str]:
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, stack.redis_url(DATA_DB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if pinger.stdout.readline().strip() != "ready":
            raise RuntimeError("the pinger did not start")
        time.sleep(idle_seconds)
        pinger.stdin.write("mark\n")
        pinger.stdin.flush()
        idle = json.loads(pinger.stdout.readline())
        rows = DataStore.random_rows(ROWS)
        run_id = f"bench-{uuid.uuid4()}"
        started = time.perf_counter()
        big.commit_run(run_id, rows)
        seconds = time.perf_counter() - started
        pinger.stdin.write("stop\n")
        pinger.stdin.flush()
        during = json.loads(pinger.stdout.readline())
    finally:
        pinger.kill()
        pinger.wait()
    return idle, during, seconds, run_id


def _p999(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))]


def _stall_results(
    idle: list[float], during: list[float], seconds: float
) -> list[Result]:
    worst, worst_idle = max(during) * 1000, max(idle) * 1000
    note = (
        f"a separate process PINGs every ms: {len(during)} PINGs during the "
        f"{seconds:.2f} s commit of {ROWS:,} rows onto {BIG:,} (staging, publishing, "
        f"indexing), {len(idle)} just before it (baseline); median "
        f"{percentile(during, 50) * 1000:.2f} ms during, "
        f"{percentile(idle, 50) * 1000:.2f} ms idle."
    )
    return [
        Result(
            f"Redis stall: worst PING of another client, {ROWS:,}-row commit",
            worst,
            worst_idle,
            "ms",
            note=note,
            also=(f"< {STALL_LIMIT_MS:g} ms", worst < STALL_LIMIT_MS),
        ),
        Result(
            f"Redis stall: p99.9 PING of another client, {ROWS:,}-row commit",
            _p999(during) * 1000,
            _p999(idle) * 1000,
            "ms",
            note="the same PINGs.",
        ),
        Result(
            f"commit of a {ROWS:,}-row run onto {BIG:,} rows",
            seconds,
            None,
            "s",
            note="context: DataStore.commit_run (the worker's call), rows made "
            "beforehand.",
        ),
    ]


def _page_results(
    stack: Stack, big: DataStore, run_id: str, samples: int
) -> list[Result]:
    """p95 of one 100-row value-sorted page 90% deep within the run, against the
    same page (offset, limit, sort) over the whole data set; alternating."""
    deep = int(ROWS * 0.9)
    store_ms: dict[str, list[float]] = {"run": [], "all": []}
    http_ms: dict[str, list[float]] = {"run": [], "all": []}
    warmup = samples // 10
    with stack.web("ours", db=DATA_DB) as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        for i in range(warmup + samples):
            for kind in ("run", "all"):
                run = run_id if kind == "run" else None
                store_time, http_time = time_page(big, conn, stack.auth, deep, run)
                if i >= warmup:
                    store_ms[kind].append(store_time)
                    http_ms[kind].append(http_time)
        conn.close()
    note = (
        f"p95 of {samples} pages each after {warmup} warm-up, alternating: 100 rows "
        f"by value, descending, offset {deep:,}, within the {ROWS:,}-row run "
        f"(run_id=) vs over all {big.total():,} rows; medians "
        f"{percentile(store_ms['run'], 50):.2f} / {percentile(store_ms['all'], 50):.2f}"
        " ms."
    )
    return [
        Result(
            f"value page within a {ROWS:,}-row run vs whole set, store call p95",
            percentile(store_ms["run"], 95),
            percentile(store_ms["all"], 95),
            "ms",
            "<=",
            PAGE_RATIO_LIMIT,
            note,
        ),
        Result(
            f"value page within a {ROWS:,}-row run vs whole set, HTTP p95",
            percentile(http_ms["run"], 95),
            percentile(http_ms["all"], 95),
            "ms",
            "<=",
            PAGE_RATIO_LIMIT,
            "the same pages through gunicorn (GET /api/data), one keep-alive "
            "connection.",
        ),
    ]
