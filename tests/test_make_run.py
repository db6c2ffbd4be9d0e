"""`make run` on an empty database: it creates `admin`, prints how to sign in with
the other start-up lines (and again once the site answers), and that password works;
a second start creates nobody and keeps the browser signed in. `flask` commands of
the same checkout find the launcher's Redis with nothing exported, and say so in one
line when the app is not running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import psutil
import requests

from myapp import PROJECT_ROOT, devserver, localstack
from tests.support import Launcher, RedisServer, clean_environ, wait_for

SIGN_IN = re.compile(r"sign in at (\S+) as 'admin', password (\S+)")


def sign_in(url: str, password: str) -> requests.Session:
    session = requests.Session()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url).text)
    response = session.post(
        url,
        data={"username": "admin", "password": password, "csrf_token": csrf[1]},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303, response.text
    return session


def listening_addresses(launcher: Launcher) -> set[str]:
    return {
        conn.laddr.ip
        for proc in launcher.roles()["web"]
        for conn in proc.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == launcher.port
    }


def assert_stopped_cleanly(launcher: Launcher) -> None:
    """After Ctrl-C (SIGINT to the terminal's process group): no process was
    SIGKILLed, nothing printed a traceback, and Redis outlived the workers."""
    stopped = launcher.log()[launcher.log().index("SIGINT received") :]
    assert "SIGKILL" not in stopped and "Traceback" not in stopped, stopped[-3000:]
    assert "Connection refused" not in stopped, stopped[-3000:]


def test_first_start_creates_admin_and_prints_the_sign_in(redis_server, tmp_path):
    env = clean_environ(
        REDIS_URL=redis_server.url,
        DATABASE_URL="sqlite:///" + str(tmp_path / "dev.sqlite"),
        INSTANCE_PATH=str(tmp_path / "instance"),
        WEB_CONCURRENCY="1",
        WORKER_CONCURRENCY="1",
        WORKER_SHUTDOWN_SECONDS="5",
    )
    launcher = Launcher("make-run", env, tmp_path / "first.log")
    try:
        found = SIGN_IN.search(launcher.log())
        assert found, launcher.log_tail()
        url, password = found.group(1), found.group(2)
        assert url == f"{launcher.url}/login"
        assert "myapp is starting at" in launcher.log()
        # Not reachable from the network unless HOST says so.
        assert listening_addresses(launcher) == {"127.0.0.1"}
        # Said again once the site answers, below the processes' banners (the
        # launcher's own check of the site may come after ours).
        launcher.wait_until(
            lambda: "myapp is ready at" in launcher.log(), "the ready line", 60
        )
        ready = launcher.log().index("myapp is ready at")
        assert ready > launcher.log().index("Listening at")
        assert SIGN_IN.search(launcher.log(), ready)[2] == password

        session = sign_in(url, password)
        assert "admin (admin)" in session.get(launcher.url + "/", timeout=10).text
        # Both workers up (on a loaded machine the site answers first): a Ctrl-C
        # while Celery builds its pool meets a Celery race of its own.
        wait_for(lambda: launcher.log().count(" ready.") >= 2, timeout=60)
    finally:
        stopping = time.monotonic()
        launcher.stop()
    assert time.monotonic() - stopping < 20, launcher.log_tail()
    assert_stopped_cleanly(launcher)
    # The password was shown once: the next start creates nobody and says how to
    # get back in; the browser signed in before the restart still is.
    again = Launcher("make-run-again", {**env, "PORT": ""}, tmp_path / "again.log")
    try:
        assert "Lost the password?" in again.log() and not SIGN_IN.search(again.log())
        page = session.get(again.url + "/", timeout=10, allow_redirects=False)
        assert page.status_code == 200 and "admin (admin)" in page.text
    finally:
        again.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def flask_command(*args: str, env: dict[str, str], timeout: float = 90):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_flask_commands_find_the_launchers_redis(tmp_path):
    # Another Redis holds 6379 (as on our own machines): the launcher's goes
    # elsewhere, and a command must not talk to the one on 6379.
    decoy = None
    if _port_free(6379):
        decoy = RedisServer(tmp_path / "decoy", port=6379).start()
    instance = tmp_path / "instance"
    shared = {
        "DATABASE_URL": "sqlite:///" + str(tmp_path / "dev.sqlite"),
        "INSTANCE_PATH": str(instance),
    }
    # No REDIS_URL anywhere: the launcher starts its embedded Redis.
    env = clean_environ(WEB_CONCURRENCY="1", WORKER_CONCURRENCY="1", **shared)
    launcher = Launcher("make-run", env, tmp_path / "launcher.log")
    command_env = clean_environ(**shared)
    try:
        chosen = localstack.read_launcher_file(instance)["REDIS_URL"]
        assert ":6379/" not in chosen
        args = ("tasks", "run", "generate_data", "rows=3", "seconds=0", "--wait")
        result = flask_command(*args, env=command_env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout
        if decoy is not None:
            assert decoy.client().dbsize() == 0
    finally:
        launcher.stop()
        if decoy is not None:
            decoy.stop()
    assert_stopped_cleanly(launcher)
    # The launcher is gone and its port with it: one line, no waiting.
    result = flask_command("tasks", "run", "generate_data", env=command_env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: the app is not running (REDIS_URL from {instance / 'devstack.env'}: "
        "connection refused); start it with `make run`"
    )


def test_host_decides_where_make_run_listens():
    env = {"PORT": "8000"}
    assert devserver._serve_address(env) == "http://127.0.0.1:8000/"
    assert env["GUNICORN_CMD_ARGS"] == "--bind 127.0.0.1:8000"
    env = {"PORT": "8000", "HOST": "0.0.0.0"}
    devserver._serve_address(env)
    assert env["GUNICORN_CMD_ARGS"] == "--bind 0.0.0.0:8000"


def test_the_instance_files_are_not_committed():
    ignored = subprocess.run(
        ["git", "check-ignore", "instance/devstack.env", "instance/secret_key"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == ["instance/devstack.env", "instance/secret_key"]
