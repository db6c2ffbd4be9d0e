"""Fixtures of the fault tests: the shipped Redis and real prefork worker processes,
which a test may SIGKILL (main process or pool children) and still have cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tests.support import RedisServer, Worker


@pytest.fixture
def fast_recovery() -> dict[str, Any]:
    """Small recovery bounds so faults resolve in seconds; docs/reliability.md
    states the shipped ones."""
    return {
        "RUN_LEASE_SECONDS": 3,
        "REDISPATCH_SECONDS": 5,
        "DISPATCH_GRACE_SECONDS": 1,
        "MAX_ATTEMPTS": 3,
    }


@pytest.fixture
def shipped_redis(tmp_path) -> Iterator[RedisServer]:
    """The embedded Redis of `make run` on a free port, stoppable and restartable."""
    server = RedisServer(tmp_path / "redis-instance").start()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start workers with `workers(app, name)`; all are killed at teardown."""
    started: list[Worker] = []

    def start(app: Flask, name: str, concurrency: int = 2) -> Worker:
        worker = Worker.for_app(app, name, tmp_path, concurrency)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
