"""Real processes for tests and benchmarks: a Redis server, Celery workers, beat,
gunicorn.

One copy for tests/, tests/faults/ and bench/, inside the package as `flask.testing`
is inside flask, so every one of them imports it the same way with no path edits.
The processes start exactly as they ship: Redis through `myapp.devserver.start_redis`
(the settings of `make run`), gunicorn and the Celery worker from the Procfile's
command lines, with their program run as `<this python> -m program` from this
checkout (so this module needs the source tree, not only an installed wheel).

Nothing here binds or contacts anything but 127.0.0.1. Pytest fixtures stay in the
conftest files; these are plain helpers they and the benchmarks build on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from flask.testing import FlaskClient

from myapp import PROJECT_ROOT
from myapp.config import ENVIRONMENT_NAMES, SETTINGS
from myapp.devserver import start_redis

if TYPE_CHECKING:
    import psutil
    from flask import Flask
    from flask.ctx import RequestContext
    from selenium.webdriver.chrome.options import Options as ChromeOptions

    from myapp.models import Run
    from myapp.runs.reaper import ReapReport

ROOT = PROJECT_ROOT


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll until predicate() is truthy; return its value, or raise AssertionError
    naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {value!r})")
        time.sleep(interval)
        value = predicate()
    return value


def wait_for_state(
    client: FlaskClient, run_id: str, states: tuple[str, ...], timeout: float = 20
) -> dict[str, Any]:
    """Poll the status URL until the run is in one of `states`; return the run."""

    def check() -> dict[str, Any] | None:
        response = client.get(f"/api/runs/{run_id}")
        if response.status_code == 404:  # a run sent by another client: not adopted yet
            return None
        body = response.get_json()
        return body if body["state"] in states else None

    return wait_for(check, timeout, what=f"run {run_id} in {states}")


def pending_run(task: str, params: dict[str, Any], *, source: str) -> Run:
    """A PENDING run row with no message sent: what admission records before it
    sends, for tests of pages and callbacks that only read runs. Needs an app
    context."""
    from myapp.extensions import db
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


def add_schedule(
    app: Flask,
    every_s: float,
    *,
    name: str = "generate-data",
    task: str = "generate_data",
    params: dict[str, Any] | None = None,
) -> int:
    """A schedule row written directly (as the first migration writes
    generate-data), with an interval shorter than users may save, for tests that
    need beat to send often. Returns its id."""
    from myapp.extensions import db
    from myapp.models import Schedule

    with app.app_context():
        schedule = Schedule(name=name, task=task, params=params or {}, every_s=every_s)
        db.session.add(schedule)
        db.session.commit()
        return schedule.id


def sweep(app: Flask) -> ReapReport:
    """What beat triggers every 15 s: the outbox and the reaper, one pass each."""
    from myapp import runs
    from myapp.runs import reaper

    with app.app_context():
        runs.dispatch_pending()
        return reaper.reap_runs()


def settle(
    app: Flask, ids: Iterable[str], timeout: float
) -> tuple[dict[str, Run], set[str]]:
    """Sweep until every run is finished; return the runs by id and the ids the
    reaper sent again or failed."""
    from myapp.extensions import db
    from myapp.models import FINISHED_STATES, Run

    ids = list(ids)
    reports: list[ReapReport] = []

    def finished() -> dict[str, Run] | None:
        reports.append(sweep(app))
        with app.app_context():
            rows = db.session.query(Run).filter(Run.id.in_(ids)).all()
            db.session.expunge_all()
        if len(rows) == len(ids) and all(r.state in FINISHED_STATES for r in rows):
            return {r.id: r for r in rows}
        return None

    done = wait_for(finished, timeout, interval=0.5, what="every run finished")
    reaped = {i for r in reports for i in (*r.resent, *r.failed)}
    return done, reaped


class StartStream:
    """Starts of `task` posted to a running web server every `interval` seconds from
    a thread, as an API client would, until `stop()`; every answer is kept as
    (monotonic time sent, HTTP status or the client error's name, run id if 202)."""

    def __init__(
        self,
        url: str,
        token: str,
        params: dict[str, Any],
        interval: float = 0.2,
        task: str = "generate_data",
    ) -> None:
        import requests

        self.answers: list[tuple[float, int | str, str | None]] = []
        self._url = f"{url}/api/tasks/{task}/runs"
        self._params = params
        self._interval = interval
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._post, daemon=True)
        self._thread.start()

    def _post(self) -> None:
        import requests

        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                # Longer than any answer should take: a hung request shows up as a
                # Timeout answer, not as a test that hangs.
                response = self._session.post(self._url, json=self._params, timeout=15)
            except requests.RequestException as exc:
                self.answers.append((sent, type(exc).__name__, None))
            else:
                status = response.status_code
                run_id = response.json()["id"] if status == 202 else None
                self.answers.append((sent, status, run_id))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def accepted(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        """Ids of the runs answered 202, of the starts sent between the two times."""
        return [i for t, _, i in self.answers if i is not None and since <= t < until]

    def statuses(self) -> dict[int | str, int]:
        """How many answers of each status."""
        return dict(Counter(status for _, status, _ in self.answers))


# -- signing in -----------------------------------------------------------------------

# The password of the users tests sign in with through the /login form.
BROWSER_PASSWORD = "correct horse battery"


class TokenClient(FlaskClient):
    """A test client that sends `Authorization: Bearer <token>` on every request:
    `default_token` unless `token=` says otherwise (None: an anonymous caller)."""

    default_token: str | None = None

    def __init__(self, *args: Any, token: str | None = "default", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if token == "default":
            token = self.default_token
        if token is not None:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    @classmethod
    def calling_as(cls, token: str | None) -> type[TokenClient]:
        """The class of clients that call with `token` unless told otherwise."""
        return type("TokenClient", (cls,), {"default_token": token})


def as_user(app: Flask, token: str | None = None) -> RequestContext:
    """A request context whose caller is the user of `token` (the app's test
    clients' by default), for code that reads the signed-in user outside a request
    sent by a client (Dash's callback core)."""
    token = token or getattr(app.test_client_class, "default_token", None)
    return app.test_request_context(headers={"Authorization": f"Bearer {token}"})


def sign_in(driver: Any, base_url: str, name: str, password: str) -> None:
    """Sign in through the /login form in a real browser (Selenium), as a person
    would; wait to be let in. Used by the browser tests and the Dash benchmark."""
    login = base_url.rstrip("/") + "/login"
    driver.get(login)
    # Cookies ignore ports: drop whatever an earlier test's server left.
    driver.delete_all_cookies()
    driver.get(login)
    driver.find_element("id", "username").send_keys(name)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("css selector", "#login-form button").click()
    wait_for(lambda: "/login" not in driver.current_url, what="signed in")


def chrome_options() -> ChromeOptions:
    """Selenium's options for the headless Chromium that the browser tests and the
    Dash benchmark drive: no sandbox or GPU (containers, root), no /dev/shm (small
    in containers), no background network traffic, one window size for the layout."""
    # Imported here: the bench installs, which import this module, lack selenium.
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return options


# -- environments ---------------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any myapp setting or FLASK_* variable (a
    developer's shell must not change what a test or benchmark sees), importing this
    checkout and finding this interpreter's tools first on PATH; then `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ENVIRONMENT_NAMES and not k.startswith("FLASK_")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def app_environ(app: Flask) -> dict[str, str]:
    """The environment under which `wsgi.py` builds the same app as `app`: every
    declared setting from its config, its database and its instance path."""
    env = {
        s.name: str(app.config[s.name])
        for s in SETTINGS
        if s.app and app.config.get(s.name) is not None
    }
    env["DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    env["INSTANCE_PATH"] = app.instance_path
    return clean_environ(**env)


# -- processes ------------------------------------------------------------------------


class RedisServer:
    """A redis-server on a free port, as `make run` starts it (append-only,
    noeviction, 127.0.0.1); it can be stopped and started again with its data.
    `popen` goes to subprocess.Popen (e.g. start_new_session=True)."""

    def __init__(self, workdir: Path, port: int | None = None, **popen: Any):
        self.workdir = workdir
        self.port = port or free_port()
        self.popen = popen
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.db_url(db), decode_responses=True)

    def start(self) -> RedisServer:
        self.process, _ = start_redis(self.workdir, port=self.port, **self.popen)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the server dies with whatever it has not written or replicated."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(20)
            self.process = None

    def replicate(self, primary: RedisServer, timeout: float = 30) -> RedisServer:
        """Make this server a replica of `primary`; return once it is in sync."""
        client = self.client()
        client.replicaof("127.0.0.1", primary.port)
        wait_for(
            lambda: client.info("replication").get("master_link_status") == "up",
            timeout,
            what=f"replica {self.port} in sync",
        )
        return self


class SentinelServer:
    """A Redis Sentinel (`redis-server <conf> --sentinel`) on a free port of
    127.0.0.1, monitoring the primary at `primary_port` as `master`: it calls the
    primary down after 1 s without an answer and fails over when `quorum` sentinels
    agree."""

    def __init__(
        self,
        workdir: Path,
        primary_port: int,
        master: str = "mymaster",
        quorum: int = 2,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.master = master
        workdir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its configuration file with what it learns.
        self.conf = workdir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"logfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master} 1000\n"
            f"sentinel failover-timeout {master} 10000\n"
            f"sentinel parallel-syncs {master} 1\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def start(self) -> SentinelServer:
        from myapp.devserver import redis_server_binary

        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.conf), "--sentinel"]
        )
        wait_for(self._answers, 15, what=f"sentinel {self.port} answering")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def primary_port(self) -> int | None:
        """The port of the server this sentinel calls primary now."""
        address = self.client().sentinel_get_master_addr_by_name(self.master)
        return int(address[1]) if address else None

    def knows(self, replicas: int, sentinels: int) -> bool:
        """It has found this many replicas and other sentinels of the primary."""
        state = self.client().sentinel_master(self.master)
        return (
            int(state["num-slaves"]) >= replicas
            and int(state["num-other-sentinels"]) >= sentinels
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None


def procfile_command(name: str, env: dict[str, str]) -> list[str]:
    """The Procfile's command line for a process, `${VAR:-default}` expanded from
    `env`, with its program run as `python -m program` from this interpreter.
    Leading variable assignments (the worker's REMAP_SIGTERM) are moved into `env`,
    as the shell would put them in the program's environment."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            break
    else:
        raise RuntimeError(f"Procfile has no {name!r} process")

    def expand(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or match.group(2) or ""

    argv = shlex.split(re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", expand, command))
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    return [sys.executable, "-m", argv[0], *argv[1:]]


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


# -- the network, for fault rehearsals -----------------------------------------------


class FaultProxy:
    """A TCP proxy on 127.0.0.1 standing for one link of one host (to Redis, or to
    the database): the test is the network. It can `cut` the link (connections
    stay open and new ones are accepted, but no byte passes either way, as in a
    partition; what was sent meanwhile arrives after `heal`, as TCP retransmits
    it), `reset` every connection, add one-way `latency`, and `heal`.

    Every byte stays on 127.0.0.1: a partition here is this proxy not passing
    bytes, never a route, a firewall rule or a network namespace."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.latency = 0.0
        self.flowing = threading.Event()
        self.flowing.set()
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    @staticmethod
    def _start(target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.latency = 0.0
        self.flowing.set()

    def delay(self, seconds: float) -> None:
        """Hold every chunk `seconds` before passing it on (each way)."""
        self.latency = seconds

    def reset(self) -> None:
        """Abort every open connection (RST to both ends); new ones pass."""
        with self._lock:
            links, self._links = self._links, []
        for sock in links:
            with contextlib.suppress(OSError):
                # Linger 0: close sends RST, as a peer that lost the connection.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset()
        self.flowing.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, server]
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """One direction: a reader stamps each chunk, a sender passes it on when its
        latency is up and the link is not cut (so chunks are delayed, not queued
        behind each other's delays)."""
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                chunks.put((time.monotonic(), data))
                if not data:
                    return

        def send() -> None:
            while True:
                received, data = chunks.get()
                due = received + self.latency
                while (left := due - time.monotonic()) > 0:
                    time.sleep(left)
                self.flowing.wait()
                try:
                    if not data:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        self._start(read)
        self._start(send)


class Host:
    """A machine of the rehearsal: our processes whose Redis and database
    connections go through this host's own proxies, and its worker hostname."""

    def __init__(self, name: str, redis_port: int, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.name = name
        self.redis = FaultProxy(redis_port)
        url = make_url(database_url)
        self.database = FaultProxy(url.port or 5432, url.host or "127.0.0.1")
        self.database_url = url.set(host="127.0.0.1", port=self.database.port)
        self.workers: list[Worker] = []

    @property
    def links(self) -> tuple[FaultProxy, FaultProxy]:
        return (self.redis, self.database)

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` (a process's environment) with its Redis and database reached
        through this host's links."""
        redis_url = re.sub(
            r"127\.0\.0\.1:\d+", f"127.0.0.1:{self.redis.port}", env["REDIS_URL"]
        )
        moved = {**env, "REDIS_URL": redis_url, "DATA_REDIS_URL": redis_url}
        moved["DATABASE_URL"] = self.database_url.render_as_string(hide_password=False)
        return moved

    def worker(self, app: Flask, logdir: Path, concurrency: int = 1) -> Worker:
        """A worker process of this host (hostname `<name>@...`) running `app`."""
        env = self.environ(app_environ(app))
        log = logdir / f"worker-{self.name}.log"
        worker = Worker(self.name, env, log, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    def cut(self) -> None:
        for link in self.links:
            link.cut()

    def heal(self) -> None:
        for link in self.links:
            link.heal()

    def delay(self, seconds: float) -> None:
        for link in self.links:
            link.delay(seconds)

    def close(self) -> None:
        for link in self.links:
            link.close()
