"""The Procfile's own lines start and answer: release migrates, web serves, the
worker answers a ping and runs what beat sends, and SIGTERM ends each process within
a platform's grace period (30 s before SIGKILL) without losing a run in flight.

Each command is read from the Procfile and run by /bin/sh, as honcho and platforms
do; only the program (`celery`, `gunicorn`, `flask`) becomes `<this python> -m ...`
so the processes import this checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, inspect, select

from myapp.extensions import db
from myapp.models import Run
from myapp.testing import free_port, wait_for, wait_for_state

ROOT = Path(__file__).resolve().parents[1]
# Heroku, Render and Kubernetes send SIGKILL 30 s after SIGTERM.
GRACE_SECONDS = 30
PROGRAMS = ("celery", "gunicorn", "flask")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line and line[0] != "#")
    return {name.strip(): command.strip() for name, command in entries}


def shell_command(command: str) -> str:
    """The Procfile line with its program run by this interpreter (`-m`)."""
    pattern = r"^((?:\w+=\S*\s+)*)(" + "|".join(PROGRAMS) + r")\s"
    python = shlex.quote(sys.executable)
    rewritten, found = re.subn(pattern, rf"\1exec {python} -m \2 ", command)
    assert found == 1, f"unexpected Procfile command: {command}"
    return rewritten


class Process:
    """One Procfile process; its output goes to a file the test can read."""

    def __init__(self, name: str, env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(
            ["/bin/sh", "-c", shell_command(procfile()[name])],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate_within_grace(self) -> int:
        """SIGTERM, then the exit code; fails if it needs longer than the grace."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(
                f"{self.name} still running {GRACE_SECONDS}s after SIGTERM:\n"
                + self.output()[-3000:]
            )

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._out.close()


@pytest.fixture
def procfile_env(redis_server, database_url, tmp_path) -> dict[str, str]:
    """A production-like environment on the test's Redis and database."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "APP_ENV": "production",
        "SECRET_KEY": "procfile-test-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "WEB_CONCURRENCY": "1",
        "WORKER_CONCURRENCY": "1",
        "RUN_LEASE_SECONDS": "3",
        "WORKER_SHUTDOWN_SECONDS": "2",
        "SCHEDULE_SECONDS": "2",
        "START_RATE_LIMIT": "off",
    }


@pytest.fixture
def spawn(procfile_env, tmp_path) -> Iterator[Callable[..., Process]]:
    """Start Procfile processes; each is killed at the end if still running."""
    started: list[Process] = []

    def start(name: str, **env: str) -> Process:
        log = tmp_path / f"{name}-{len(started)}.log"
        process = Process(name, {**procfile_env, **env}, log)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def celery_ping(env: dict[str, str], worker_name: str) -> bool:
    ping = ["celery", "-A", "wsgi:celery_app", "inspect", "ping", "--timeout", "2"]
    # --destination: a pong only from the worker this test started.
    result = subprocess.run(
        [sys.executable, "-m", *ping, "--destination", worker_name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0 and "pong" in result.stdout


def test_procfile_names_the_four_processes():
    assert set(procfile()) == {"release", "web", "worker", "beat"}


def test_release_migrates_and_web_serves(spawn, tmp_path, app):
    fresh = "sqlite:///" + str(tmp_path / "fresh.sqlite")
    release = spawn("release", DATABASE_URL=fresh)
    assert release.popen.wait(120) == 0, release.output()
    assert "runs" in inspect(create_engine(fresh)).get_table_names()

    port = free_port()
    web = spawn("web", PORT=str(port))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert web.popen.poll() is None, web.output()
        try:
            return requests.get(url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    wait_for(healthy, timeout=60, interval=0.2)
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    token = app.test_client_class.default_token
    auth = {"Authorization": f"Bearer {token}"}
    assert "Start a run" in requests.get(url + "/", headers=auth, timeout=5).text
    start = url + "/api/tasks/summarize_data/runs"
    assert requests.post(start, json={}, timeout=5).status_code == 401
    response = requests.post(start, json={}, headers=auth, timeout=5)
    assert response.status_code == 202
    run_id = response.json()["id"]

    assert web.terminate_within_grace() == 0
    output = web.output()
    # One line per run transition, and an access log line, in the web's log.
    assert f"run {run_id} task=summarize_data source=api state=PENDING" in output
    assert '"POST /api/tasks/summarize_data/runs HTTP/1.1" 202' in output
    # The access log does not write credentials.
    assert token not in output and token[-16:] not in output


def test_worker_answers_ping_runs_beat_and_shuts_down_without_losing_a_run(
    spawn, procfile_env, app, client
):
    name = f"procfile-{uuid.uuid4().hex[:8]}@test"
    worker = spawn("worker", WORKER_NAME=name)
    wait_for(lambda: celery_ping(procfile_env, name), timeout=90, interval=0.5)

    # Cancel reaches a task on this worker through its run row (pool processes
    # ignore SIGTERM under REMAP_SIGTERM, so a terminate signal would not).
    run = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 5, "seconds": 60}
    ).get_json()
    wait_for_state(client, run["id"], ("PROGRESS",), timeout=90)
    assert client.delete(run["status_url"]).status_code == 202
    wait_for(
        lambda: re.search(
            rf"Task generate_data\[{run['id']}\] (raised|failed|succeeded)",
            worker.output(),
        ),
        timeout=20,
    )
    assert client.get(run["status_url"]).get_json()["state"] == "REVOKED"

    # beat sends generate_data every SCHEDULE_SECONDS; the worker records the run.
    beat = spawn("beat")

    def beat_run() -> Run | None:
        with app.app_context():
            db.session.expire_all()
            return db.session.scalar(
                select(Run).where(Run.source == "beat", Run.state == "SUCCESS")
            )

    done = wait_for(beat_run, timeout=90, interval=0.5)
    assert beat.terminate_within_grace() == 0
    assert done.task == "generate_data" and done.result["rows"] == 10
    assert (
        f"run {done.id} task=generate_data source=beat state=SUCCESS" in worker.output()
    )

    # SIGTERM while a run is in flight: the worker stops within the grace period
    # and the run is handed back to the queue, not lost.
    run = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 6, "seconds": 8}
    ).get_json()
    wait_for_state(client, run["id"], ("PROGRESS",), timeout=90)
    worker.terminate_within_grace()
    assert client.get(run["status_url"]).get_json()["state"] == "PROGRESS"

    spawn("worker", WORKER_NAME=f"second-{name}")
    finished = wait_for_state(
        client, run["id"], ("SUCCESS", "FAILURE", "REVOKED"), timeout=120
    )
    assert finished["state"] == "SUCCESS", finished
    assert finished["attempts"] >= 2 and finished["result"]["rows"] == 6
