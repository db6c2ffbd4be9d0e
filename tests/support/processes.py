"""Our processes as subprocesses: gunicorn, Celery workers and beat from the
Procfile, and `make run`'s launcher, each in its own session with its log in a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.basics import free_port, wait_for
from tests.support.environ import ROOT, app_environ
from tests.support.procfile import procfile_command

if TYPE_CHECKING:
    import psutil
    from flask import Flask


class Service:
    """One subprocess in its own session, its output in a log file. `stop` ends it
    with SIGTERM, then SIGKILLs whatever is left of its session; `kill` SIGKILLs
    the session at once."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], log: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so teardown reaches orphaned children too.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log().splitlines()[-lines:])
        except OSError:
            return ""

    def tree(self) -> list[psutil.Process]:
        """This process and all its descendants (gunicorn workers, pool children)."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def children(self) -> list[int]:
        """The direct children's pids (a prefork worker's pool processes)."""
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        """Resident memory of the whole tree, in bytes."""
        import psutil

        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def wait_until(
        self,
        ready: Callable[[], Any],
        what: str,
        timeout: float = 60,
        interval: float = 0.1,
    ) -> None:
        """Poll `ready` until it holds; fail with the log's tail if the process
        exits or time runs out."""

        def check() -> Any:
            if not self.alive():
                self.fail("exited during start")
            return ready()

        try:
            wait_for(check, timeout, interval, what)
        except AssertionError:
            self.fail(f"not {what} within {timeout}s")

    def fail(self, why: str) -> None:
        self.stop()
        raise RuntimeError(
            f"{self.name}: {why}\n--- {self.log_path} ---\n{self.log_tail()}"
        )

    def kill_main(self) -> None:
        """SIGKILL the main process only, as the OOM killer would."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL every process of the session, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._log_file.close()

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Web(Service):
    """gunicorn from the Procfile serving `app`, on 127.0.0.1 at a free port;
    returns once /healthz answers."""

    def __init__(
        self, name: str, env: Mapping[str, str], log: Path, app: str = "wsgi:app"
    ) -> None:
        self.port = free_port()
        env = {**env, "PORT": str(self.port)}
        argv = procfile_command("web", env)
        argv = [app if a == "wsgi:app" else a for a in argv]
        # The command line overrides gunicorn.conf.py's 0.0.0.0 bind: load stays local.
        argv += ["--bind", f"127.0.0.1:{self.port}"]
        super().__init__(name, argv, env, log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_until(lambda: _healthy(self.url), "answering /healthz", interval=0.2)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.tree()[1:]]


class Worker(Service):
    """A prefork Celery worker from the Procfile's `worker` line, named
    `name@<host>`, running `app`; returns once it is ready. `concurrency` sets its
    pool size (WORKER_CONCURRENCY, else the Procfile's default)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log: Path,
        app: str = "wsgi:celery_app",
        concurrency: int | None = None,
    ) -> None:
        env = {**env, "WORKER_NAME": f"{name}@%h"}
        if concurrency is not None:
            env["WORKER_CONCURRENCY"] = str(concurrency)
        argv = procfile_command("worker", env)
        argv = [app if a == "wsgi:celery_app" else a for a in argv]
        # Before a trailing `--` (Celery's extra config), not after it.
        end = argv.index("--") if "--" in argv else len(argv)
        argv[end:end] = ["--pool", "prefork"]
        super().__init__(name, argv, env, log)
        self.wait_until(lambda: " ready." in self.log(), "ready")

    @classmethod
    def for_app(
        cls, app: Flask, name: str, logdir: Path, concurrency: int | None = None
    ) -> Worker:
        """A worker building the same app as `app` (same Redis, database and
        settings) from wsgi.py, logging to `logdir/worker-<name>.log`."""
        log = logdir / f"worker-{name}.log"
        return cls(name, app_environ(app), log, concurrency=concurrency)


class Beat(Service):
    """Celery beat from the Procfile's `beat` line, running `app`; returns once it
    has started. `max_interval` shortens how often it wakes (and so reads the
    schedules table) for tests that wait on it."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log: Path,
        app: str = "wsgi:celery_app",
        max_interval: float | None = None,
    ) -> None:
        env = dict(env)
        argv = procfile_command("beat", env)
        argv = [app if a == "wsgi:celery_app" else a for a in argv]
        if max_interval is not None:
            argv += ["--max-interval", str(max_interval)]
        super().__init__(name, argv, env, log)
        self.wait_until(lambda: "beat: Starting..." in self.log(), "started")

    def holds_lock(self) -> bool:
        return "beat: Acquired lock" in self.log()

    @classmethod
    def for_app(
        cls, app: Flask, name: str, logdir: Path, max_interval: float | None = None
    ) -> Beat:
        """A beat building the same app as `app`, logging to
        `logdir/beat-<name>.log`."""
        log = logdir / f"beat-{name}.log"
        return cls(name, app_environ(app), log, max_interval=max_interval)


class Launcher(Service):
    """`make run`'s launcher (`python -m myapp.devserver`: migrations, then web,
    worker, maintenance and beat under honcho); returns once /readyz answers and a
    worker runs."""

    def __init__(self, name: str, env: Mapping[str, str], log: Path) -> None:
        self.port = int(env.get("PORT") or free_port())
        env = {**env, "PORT": str(self.port)}
        super().__init__(name, [sys.executable, "-m", "myapp.devserver"], env, log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait_until(self._ready, "ready", timeout=120, interval=0.5)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                return response.status == 200 and bool(self.roles()["worker"])
        except OSError:
            return False

    def roles(self) -> dict[str, list[Any]]:
        """The processes under it by Procfile name: web (gunicorn), worker and
        maintenance (Celery workers, pool processes included) and beat."""
        import psutil

        found: dict[str, list[Any]] = {
            "web": [],
            "worker": [],
            "maintenance": [],
            "beat": [],
        }
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                command = " ".join(proc.cmdline())
                if "gunicorn" in command:
                    found["web"].append(proc)
                elif "celery" in command and "--queues=maintenance " in command:
                    found["maintenance"].append(proc)
                elif "celery" in command and " worker" in command:
                    found["worker"].append(proc)
                elif "celery" in command and " beat" in command:
                    found["beat"].append(proc)
        return found

    def stop(self, timeout: float = 30) -> None:
        # SIGINT to the group is Ctrl-C in a terminal: the launcher tells honcho,
        # which stops its processes.
        import psutil

        # honcho runs in a process group of its own: whatever of the tree outlives
        # the launcher is killed by pid, never left behind.
        tree = self.tree()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()
        for proc in tree[1:]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
