"""The app's Prometheus figures, counted where things happen.

Counters and histograms are written by whichever process sees the event: runs
accepted by the web (or adopted by a worker), started and finished by a worker,
HTTP requests by the web. With PROMETHEUS_MULTIPROC_DIR set (the Procfile and
`make run` set it), prometheus_client keeps each process's figures in a file of that
directory and `collect_registry` adds them up, so one scrape of `/metrics` on a
host shows every gunicorn worker and every Celery pool process of that host
together. Without it (tests in one process, the CLI) the figures stay in this
process.

Figures that are a state rather than an event (active runs, queued messages, beat's
last tick) are read when scraped; `myapp.web.metrics` adds them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# This process's figures when it is not in multiprocess mode. Never prometheus'
# global registry: the app is built many times in one process.
_LOCAL = CollectorRegistry(auto_describe=True)

# Runs last from a fraction of a second (a summary) to ten minutes (the longest
# generate_data).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)

RUNS_ACCEPTED = Counter(
    "myapp_runs_accepted",
    "Runs recorded (PENDING): admitted by an edge, or adopted from beat and other "
    "Celery clients.",
    ["task", "source"],
    registry=_LOCAL,
)
RUNS_STARTED = Counter(
    "myapp_runs_started",
    "Runs claimed by a worker (STARTED); a run run again after a lost worker counts "
    "once per attempt.",
    ["task", "source"],
    registry=_LOCAL,
)
RUNS_FINISHED = Counter(
    "myapp_runs_finished",
    "Runs that reached a final state.",
    ["task", "source", "state"],
    registry=_LOCAL,
)
RUN_DURATION = Histogram(
    "myapp_run_duration_seconds",
    "Time from a run's claim to its final state, for runs that started.",
    ["task"],
    buckets=RUN_BUCKETS,
    registry=_LOCAL,
)
HTTP_REQUESTS = Counter(
    "myapp_http_requests",
    "HTTP requests answered, by Flask endpoint (the route, not the URL) and status.",
    ["endpoint", "status"],
    registry=_LOCAL,
)
HTTP_LATENCY = Histogram(
    "myapp_http_request_duration_seconds",
    "Time to answer an HTTP request, by Flask endpoint.",
    ["endpoint"],
    registry=_LOCAL,
)

_FINAL = frozenset(("SUCCESS", "FAILURE", "REVOKED"))


def observe_transition(
    task: str, source: str, state: str, duration_s: float | None
) -> None:
    """Count one run transition (called with the one log line per transition)."""
    if state == "PENDING":
        RUNS_ACCEPTED.labels(task, source).inc()
    elif state == "STARTED":
        RUNS_STARTED.labels(task, source).inc()
    elif state in _FINAL:
        RUNS_FINISHED.labels(task, source, state).inc()
        if duration_s is not None:
            RUN_DURATION.labels(task).observe(duration_s)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def collect_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry for one scrape: every process's figures on this host (or this
    process's alone), plus `extra` collectors read at scrape time."""
    # Not auto_describe: that would run every collector once more on register.
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is None:
        registry.register(_Forward(_LOCAL))
    else:
        MultiProcessCollector(registry, path=path)
    for collector in extra:
        registry.register(collector)
    return registry


def serve_host_metrics(port: int) -> None:
    """Serve this host's counters on `port` (a thread of the calling process): how a
    worker on a host without a web process is scraped."""
    start_http_server(port, registry=collect_registry())


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        return self.source.collect()


def metrics_init_app(app: Flask) -> None:
    """Time and count every request; make sure the multiprocess directory exists
    before the first figure is written to it."""
    path = multiprocess_dir()
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)

    @app.before_request
    def _start_timer() -> None:
        g._metrics_started = time.perf_counter()

    @app.after_request
    def _count_request(response):
        started = g.pop("_metrics_started", None)
        rule = request.url_rule
        # The route's endpoint, never the raw path: label values stay few.
        endpoint = rule.endpoint if rule is not None else "unmatched"
        HTTP_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        if started is not None:
            HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        return response
