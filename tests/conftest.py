"""Real parts: a redis-server on a free port, a real database, a real Celery worker.

Nothing is simulated: runs go through the broker to an embedded worker thread
(`celery.contrib.testing.worker.start_worker`), and the data lands in Redis.
Set TEST_DATABASE_URL to run the same suite on PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The embedded worker's ping check needs this task registered.
import celery.contrib.testing.tasks  # noqa: F401
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from myapp import create_app
from myapp.devserver import start_redis
from myapp.extensions import db

ENV_TO_CLEAR = (
    "REDIS_URL",
    "DATABASE_URL",
    "SECRET_KEY",
    "APP_ENV",
    "INSTANCE_PATH",
    "MAX_ROWS_PER_RUN",
    "MAX_ACTIVE_RUNS",
    "START_RATE_LIMIT",
    "SCHEDULE_SECONDS",
    "RUN_LEASE_SECONDS",
    "DATA_PREFIX",
    "DATA_REDIS_URL",
    "DATA_MAX_ROWS",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway redis-server process the tests can stop and start again."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # The same command and settings `make run` uses (append-only, noeviction).
        self.process, _ = start_redis(self.workdir, port=self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """TEST_DATABASE_URL, or a SQLite file; migrated to head once per session."""
    url = os.environ.get("TEST_DATABASE_URL") or (
        "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite")
    )
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        }
    )
    with app.app_context():
        # Start from an empty database so the migrations are what builds it.
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch) -> None:
    """A developer's shell must not change what the tests see."""
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_app(redis_server, database_url, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Build apps on the session's Redis and database, each starting empty."""
    built: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "REDIS_URL": redis_server.url,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": "test-secret",
            "START_RATE_LIMIT": "off",
            **overrides,
        }
        app = create_app(config)
        built.append(app)
        return app

    redis.Redis.from_url(redis_server.url).flushdb()
    cleanup = factory()
    with cleanup.app_context():
        db.session.execute(text("DELETE FROM runs"))
        db.session.commit()
    yield factory
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def worker(app) -> Iterator[Any]:
    """A real Celery worker consuming the app's queue, in a thread (solo pool)."""
    celery_app = app.extensions["celery"]
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=True,
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as controller:
        yield controller


def wait_for(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05):
    """Poll until predicate() is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"condition not met within {timeout}s (last: {value!r})"
            )
        time.sleep(interval)
        value = predicate()
    return value


def wait_for_state(client, run_id: str, states: tuple[str, ...], timeout: float = 20):
    """Poll the status URL until the run is in one of `states`; return the run."""

    def check():
        response = client.get(f"/api/runs/{run_id}")
        if response.status_code == 404:  # a run sent by another client: not adopted yet
            return None
        body = response.get_json()
        return body if body["state"] in states else None

    return wait_for(check, timeout)


def pending_run(task: str, params: dict[str, Any], *, source: str):
    """A PENDING run row with no message sent: what admission records before it
    sends, for tests of pages and callbacks that only read runs."""
    import uuid

    from myapp.models import Run, utcnow
    from myapp.tasks import get_definition

    run = Run(
        id=str(uuid.uuid4()),
        task=task,
        params=get_definition(task).validate(params),
        source=source,
        state="PENDING",
        attempts=0,
        created_at=utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    return run
