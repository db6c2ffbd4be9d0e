"""Run latency: a trivial run from created to finished, against the raw Celery
round trip `delay().get()` of a no-op task.

The goal rows time bench/tasks.py's `noop` (a team's task that does nothing), so
both sides do nothing and the ratio is the cost of a run; a `generate_data` run of
one row (a data commit in Redis besides) is timed alongside, as context.

Both workers are up at once and the samples alternate, one run at a time, so each
side sees the same machine. Ours is shown two ways: the run row's own
created_at -> finished_at, and what a client sees from sending the POST to the
result being readable (a superset: HTTP and the result fetch too).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time

from bench.report import Result
from bench.runs_common import run_times
from bench.stack import Stack

NAME = "latency"
TASKS = {
    "noop": {},
    "generate_data": {"rows": 1, "seconds": 0},
}


def run(stack: Stack, quick: bool) -> list[Result]:
    samples = 30 if quick else 150
    warmup = 5 if quick else 15
    stack.reset()
    noop = stack.baseline_celery().tasks["noop"]
    client: dict[str, list[float]] = {task: [] for task in TASKS}
    measured: dict[str, set[str]] = {task: set() for task in TASKS}
    raw: list[float] = []
    with (
        stack.web("ours") as web,
        stack.worker("ours"),
        stack.worker("baseline"),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
        for i in range(warmup + samples):
            for task, params in TASKS.items():
                started = time.perf_counter()
                run_id = _post_and_wait(conn, task, params, stack.auth)
                if i >= warmup:
                    client[task].append(time.perf_counter() - started)
                    measured[task].add(run_id)
            started = time.perf_counter()
            noop.delay().get(timeout=60)
            if i >= warmup:
                raw.append(time.perf_counter() - started)
        conn.close()
    rows = run_times(stack)
    row: dict[str, list[float]] = {}
    for task in TASKS:
        mine = [r for r in rows if r[0] in measured[task]]
        failed = [r for r in mine if r[3] != "SUCCESS"]
        if failed or len(mine) != samples:
            raise RuntimeError(f"{task}: {len(failed)} failed, {len(mine)} found")
        row[task] = [(r[2] - r[1]).total_seconds() for r in mine]
    raw_ms = statistics.median(raw) * 1000
    note = (
        f"median of {samples} sequential runs of bench/tasks.py's `noop` after "
        f"{warmup} warm-up, alternating with the baseline and a generate_data run; "
        f"prefork workers, concurrency from the Procfile. p90: row "
        f"{_p90(row['noop']):.1f} ms, client {_p90(client['noop']):.1f} ms, raw "
        f"Celery {_p90(raw):.1f} ms."
    )
    return [
        Result(
            "run latency, no-op task (row created → finished)",
            statistics.median(row["noop"]) * 1000,
            raw_ms,
            "ms",
            "<=",
            1.5,
            note,
        ),
        Result(
            "run latency, no-op task (client: POST → result, ?wait=)",
            statistics.median(client["noop"]) * 1000,
            raw_ms,
            "ms",
            "<=",
            1.6,
            "the same runs timed by the client: HTTP POST, then one GET of the "
            "status URL with ?wait=30 (answered at each change), result read.",
        ),
        Result(
            "run latency, generate_data rows=1 (row created → finished)",
            statistics.median(row["generate_data"]) * 1000,
            raw_ms,
            "ms",
            note="context: the same with the run's data commit in Redis (staged, "
            f"published, indexed); p90 {_p90(row['generate_data']):.1f} ms.",
        ),
        Result(
            "run latency, generate_data rows=1 (client: POST → result, ?wait=)",
            statistics.median(client["generate_data"]) * 1000,
            raw_ms,
            "ms",
            note="context: the same runs timed by the client.",
        ),
    ]


def _post_and_wait(
    conn: http.client.HTTPConnection,
    task: str,
    params: dict,
    headers: dict[str, str],
) -> str:
    """POST a run and follow it to its end as a client would; its id."""
    conn.request(
        "POST",
        f"/api/tasks/{task}/runs",
        body=json.dumps(params),
        headers={"Content-Type": "application/json", **headers},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    if response.status != 202:
        raise RuntimeError(f"POST answered {response.status}: {body}")
    # The run row is the status of record (runs store no Celery result):
    # follow the status URL as a client would.
    _wait_finished(conn, body["status_url"], headers, timeout=60)
    return body["id"]


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1] * 1000


def _wait_finished(
    conn: http.client.HTTPConnection,
    url: str,
    headers: dict[str, str],
    timeout: float,
) -> None:
    """Follow a run's status URL with ?wait= (no sleep of ours) until it has
    finished: each answer comes at a change of state or progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.request("GET", url + "?wait=30", headers=headers)
        response = conn.getresponse()
        state = json.loads(response.read())["state"]
        if state in ("SUCCESS", "FAILURE", "REVOKED"):
            if state != "SUCCESS":
                raise RuntimeError(f"{url} ended {state}")
            return
    raise RuntimeError(f"{url} did not finish within {timeout} s")
