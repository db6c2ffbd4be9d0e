"""Fixtures of the fault tests: the shipped Redis and real worker processes.

tests/faults is a package so this conftest does not shadow tests/conftest.py
(whose helpers other test modules import as `conftest`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from faults.procs import ShippedRedis, Worker


@pytest.fixture
def shipped_redis(tmp_path) -> Iterator[ShippedRedis]:
    server = ShippedRedis(tmp_path / "redis-instance")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start workers with `workers(app, name)`; all are killed at teardown."""
    started: list[Worker] = []

    def start(app: Flask, name: str, concurrency: int = 2) -> Worker:
        worker = Worker(app, name, tmp_path, concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
