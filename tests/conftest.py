"""Real parts: a redis-server on a free port, a real database, a real Celery worker.

Nothing is simulated: runs go through the broker to an embedded worker thread
(`celery.contrib.testing.worker.start_worker`), and the data lands in Redis.
Set TEST_DATABASE_URL to run the same suite on PostgreSQL. Fixtures live here; the
plain helpers (free_port, wait_for, wait_for_state, pending_run, the process
classes, signing in) are in `tests.support`, shared with tests/faults and bench/.

Every app's test client calls as the admin `admin` with an API token unless told
otherwise (`app.test_client(token=None)` is anonymous; `token=` another user's);
`make_user` adds users of other roles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

# The embedded worker's ping check needs this task registered.
import celery.contrib.testing.tasks  # noqa: F401
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from myapp import create_app, users
from myapp.config import ENVIRONMENT_NAMES
from myapp.extensions import db
from tests.support import BROWSER_PASSWORD, RedisServer, TokenClient, Web, app_environ

# The admin every test client calls as.
ADMIN = "admin"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """One redis-server for the session, started as `make run` starts it."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
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
    for name in ENVIRONMENT_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name, raising=False)


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
        app.test_client_class = TokenClient.calling_as(
            admin_token[0] if admin_token else None
        )
        built.append(app)
        return app

    redis.Redis.from_url(redis_server.url).flushdb()
    cleanup = factory()
    with cleanup.app_context():
        # Schedules too: the two the migration made would fire in tests that run
        # beat; a test that wants one makes it.
        for table in ("runs", "schedules", "api_tokens", "users"):
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        # No password: the tests' admin calls with its token only (a password costs
        # a slow hash; tests that sign in through /login make their own users).
        users.create_user(ADMIN, "admin", None)
        admin_token.append(users.issue_token(ADMIN, "tests"))
    cleanup.test_client_class = TokenClient.calling_as(admin_token[0])
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
def browser_login(make_user) -> tuple[str, str]:
    """An admin who signs in with a password: (name, password), for real browsers."""
    name, _ = make_user("admin", name="ada", password=BROWSER_PASSWORD)
    return name, BROWSER_PASSWORD


@pytest.fixture
def worker_for() -> Callable[[Flask], Any]:
    """`with worker_for(app):` a real Celery worker (solo pool, in a thread) for an
    app built with its own settings (TASK_MODULES, limits); `pool="prefork"` for
    what only the prefork pool does (time limits), with one pool process."""

    def start(app: Flask, pool: str = "solo") -> Any:
        prefork = {"concurrency": 1} if pool == "prefork" else {}
        return start_worker(
            app.extensions["celery"],
            pool=pool,
            # The ping check's task is not sent to a forked pool in time.
            perform_ping_check=pool != "prefork",
            shutdown_timeout=30,
            loglevel="WARNING",
            **prefork,
        )

    return start


@pytest.fixture
def web_for(tmp_path) -> Iterator[Callable[[Flask], tuple[str, dict[str, str]]]]:
    """`web_for(app)`: gunicorn from the Procfile serving the same app as `app`
    (one process of the shipped 4 threads); returns its URL and the headers of
    the tests' admin."""
    servers: list[Web] = []

    def serve(app: Flask) -> tuple[str, dict[str, str]]:
        env = {**app_environ(app), "WEB_CONCURRENCY": "1", "SECRET_KEY": "test"}
        server = Web(f"web-{len(servers)}", env, tmp_path / f"web{len(servers)}.log")
        servers.append(server)
        token = app.test_client_class.default_token
        return server.url, {"Authorization": f"Bearer {token}"}

    yield serve
    for server in servers:
        server.stop()


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
