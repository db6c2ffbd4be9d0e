"""Real parts: a redis-server on a free port, a real database, a real Celery worker.

Nothing is simulated: runs go through the broker to an embedded worker thread
(`celery.contrib.testing.worker.start_worker`), and the data lands in Redis.
Set TEST_DATABASE_URL to run the same suite on PostgreSQL.

Every app's test client calls as the admin `admin` with an API token unless told
otherwise (`app.test_client(token=None)` is anonymous; `token=` another user's);
`make_user` adds users of other roles.
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
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from myapp import create_app, users
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
    "LOGIN_RATE_LIMIT",
    "SCHEDULE_SECONDS",
    "RUN_LEASE_SECONDS",
    "DATA_PREFIX",
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


ADMIN = "admin"


class TokenClient(FlaskClient):
    """A test client that sends `Authorization: Bearer <token>` on every request
    (none when `token` is None: an anonymous caller)."""

    default_token: str | None = None

    def __init__(self, *args: Any, token: str | None = "default", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if token == "default":
            token = self.default_token
        if token is not None:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"


@pytest.fixture
def make_app(redis_server, database_url, tmp_path) -> Iterator[Callable[..., Flask]]:
    """Build apps on the session's Redis and database, each starting empty but for
    the admin their test clients call as."""
    built: list[Flask] = []
    admin_token: list[str] = []

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
        app.test_client_class = type(
            "AdminClient", (TokenClient,), {"default_token": admin_token[0]}
        )
        built.append(app)
        return app

    redis.Redis.from_url(redis_server.url).flushdb()
    admin_token.append("")
    cleanup = factory()
    with cleanup.app_context():
        for table in ("runs", "api_tokens", "users"):
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        # No password: the tests' admin signs in with its token only (a password
        # costs a slow hash; tests that sign in through /login make their own).
        users.create_user(ADMIN, "admin", None)
        admin_token[0] = users.issue_token(ADMIN, "tests")
    cleanup.test_client_class.default_token = admin_token[0]
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


BROWSER_PASSWORD = "correct horse battery"


@pytest.fixture
def browser_login(make_user) -> tuple[str, str]:
    """An admin who signs in with a password: (name, password), for real browsers."""
    name, _ = make_user("admin", name="ada", password=BROWSER_PASSWORD)
    return name, BROWSER_PASSWORD


def sign_in(driver, base_url: str, name: str, password: str) -> None:
    """Sign in through the /login form as a person would; wait to be let in."""
    driver.get(base_url + "/login")
    # Cookies ignore ports: drop whatever an earlier test's server left.
    driver.delete_all_cookies()
    driver.get(base_url + "/login")
    driver.find_element("id", "username").send_keys(name)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("css selector", "#login-form button").click()
    wait_for(lambda: "/login" not in driver.current_url)


def as_user(app: Flask, token: str | None = None):
    """A request context whose caller is the user of `token` (the tests' admin by
    default), for code that reads the signed-in user outside a client request."""
    token = token or app.test_client_class.default_token
    return app.test_request_context(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def make_user(app) -> Callable[..., tuple[str, str]]:
    """`make_user(role, name=None, password=None)`: a new user and an API token of
    theirs, as (name, token)."""
    count = [0]

    def create(
        role: str, name: str | None = None, password: str | None = None
    ) -> tuple[str, str]:
        count[0] += 1
        name = name or f"{role}{count[0]}"
        with app.app_context():
            users.create_user(name, role, password)
            return name, users.issue_token(name, "tests")

    return create


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
