"""Real processes for the fault tests: the shipped Redis and Celery workers.

Redis is started by `myapp.devserver.start_redis`, the very settings `make run`
ships (append-only file, fsync every second, noeviction, 127.0.0.1), so stopping
and starting it keeps its data like production would. Workers are
`python -m celery -A wsgi:celery_app worker -P prefork` subprocesses, each in its own
session so a test can SIGKILL the main process or a pool child and still clean up
every process it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis
from flask import Flask

from myapp import runs
from myapp.devserver import start_redis
from myapp.extensions import db
from myapp.models import FINISHED_STATES, Run
from myapp.runs import reaper

ROOT = Path(__file__).resolve().parents[2]

# Small bounds so faults resolve in seconds; the README states the shipped ones.
FAST_RECOVERY = {
    "RUN_LEASE_SECONDS": 3,
    "REDISPATCH_SECONDS": 5,
    "DISPATCH_GRACE_SECONDS": 1,
    "MAX_ATTEMPTS": 3,
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ShippedRedis:
    """The embedded Redis of `make run`, on a free port, stoppable and restartable."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process, url = start_redis(self.workdir, port=self.port)
        assert url == self.url

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


class Worker:
    """A real prefork Celery worker running the project's wsgi:celery_app."""

    def __init__(self, app: Flask, name: str, logdir: Path, concurrency: int = 2):
        self.app = app
        self.name = name
        self.concurrency = concurrency
        self.log_path = logdir / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        config = self.app.config
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(ROOT),
            REDIS_URL=config["REDIS_URL"],
            DATABASE_URL=config["SQLALCHEMY_DATABASE_URI"],
            SECRET_KEY=config["SECRET_KEY"],
            INSTANCE_PATH=self.app.instance_path,
            START_RATE_LIMIT="off",
        )
        for name in ("RUN_LEASE_SECONDS", "MAX_ATTEMPTS", "MAX_ROWS_PER_RUN"):
            env[name] = str(config[name])
        return env

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "wsgi:celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(self.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.name}@%h",
            "--loglevel=INFO",
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        poll(lambda: " ready." in self.log(), timeout=60, what=f"{self.name} ready")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        """Pool processes: the main process's children."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the command name (which may hold spaces) end with ')'.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid:
                found.append(int(entry.name))
        return found

    def kill_main(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        """End every process of this worker's session (orphaned pool children too)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.process = None


def poll(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def sweep(app: Flask) -> reaper.ReapReport:
    """What beat triggers every 15 s: the outbox and the reaper, one pass each."""
    with app.app_context():
        runs.dispatch_pending()
        return reaper.reap_runs()


def settle(
    app: Flask, ids: Iterable[str], timeout: float
) -> tuple[dict[str, Run], set[str]]:
    """Sweep until every run is finished; return the runs by id and the ids the
    reaper sent again or failed."""
    ids = list(ids)
    reports: list[reaper.ReapReport] = []

    def finished() -> dict[str, Run] | None:
        reports.append(sweep(app))
        with app.app_context():
            rows = db.session.query(Run).filter(Run.id.in_(ids)).all()
            db.session.expunge_all()
        if len(rows) == len(ids) and all(r.state in FINISHED_STATES for r in rows):
            return {r.id: r for r in rows}
        return None

    done = poll(finished, timeout, "every run finished", interval=0.5)
    reaped = {i for r in reports for i in (*r.resent, *r.failed)}
    return done, reaped
