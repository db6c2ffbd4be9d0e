"""Run latency: a trivial run (rows=1, seconds=0) from created to finished, against
the raw Celery round trip `delay().get()` of a no-op task.

Both workers are up at once and the samples alternate, one run at a time, so each
side sees the same machine. Ours is shown two ways: the run row's own
created_at -> finished_at (the issue's measure), and what a client sees from sending
the POST to the result being readable (a superset: HTTP and the result fetch too).
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
BODY = json.dumps({"rows": 1, "seconds": 0})


def run(stack: Stack, quick: bool) -> list[Result]:
    samples = 30 if quick else 150
    warmup = 5 if quick else 15
    stack.reset()
    noop = stack.baseline_celery().tasks["noop"]
    client: list[float] = []
    raw: list[float] = []
    measured: set[str] = set()
    with (
        stack.web("ours") as web,
        stack.worker("ours"),
        stack.worker("baseline"),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
        for i in range(warmup + samples):
            started = time.perf_counter()
            conn.request(
                "POST",
                "/api/tasks/generate_data/runs",
                body=BODY,
                headers={"Content-Type": "application/json", **stack.auth},
            )
            response = conn.getresponse()
            body = json.loads(response.read())
            if response.status != 202:
                raise RuntimeError(f"POST answered {response.status}: {body}")
            # The run row is the status of record (runs store no Celery result):
            # poll the status URL as a client would.
            _wait_finished(conn, body["status_url"], stack.auth, timeout=60)
            elapsed = time.perf_counter() - started

            started = time.perf_counter()
            noop.delay().get(timeout=60)
            raw_elapsed = time.perf_counter() - started
            if i >= warmup:
                client.append(elapsed)
                raw.append(raw_elapsed)
                measured.add(body["id"])
        conn.close()
    rows = [r for r in run_times(stack) if r[0] in measured]
    failed = [r for r in rows if r[3] != "SUCCESS"]
    if failed or len(rows) != samples:
        raise RuntimeError(f"{len(failed)} runs did not succeed, {len(rows)} found")
    row = [(r[2] - r[1]).total_seconds() for r in rows]
    raw_ms = statistics.median(raw) * 1000
    note = (
        f"median of {samples} sequential runs after {warmup} warm-up, alternating "
        f"with the baseline; prefork workers, concurrency from the Procfile. "
        f"p90: row {_p90(row):.1f} ms, client {_p90(client):.1f} ms, raw Celery "
        f"{_p90(raw):.1f} ms."
    )
    return [
        Result(
            "run latency (row created → finished)",
            statistics.median(row) * 1000,
            raw_ms,
            "ms",
            "<=",
            1.5,
            note,
        ),
        Result(
            "run latency (client: POST → result, ?wait=)",
            statistics.median(client) * 1000,
            raw_ms,
            "ms",
            "<=",
            1.6,
            "the same runs timed by the client: HTTP POST, then one GET of the "
            "status URL with ?wait=30 (answered at each change), result read.",
        ),
    ]


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
