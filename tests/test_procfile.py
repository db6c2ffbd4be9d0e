"""The Procfile's own lines start and answer: release migrates, web serves, the
worker answers a ping and runs what beat sends, and SIGTERM ends each process within
a platform's grace period (30 s before SIGKILL) without losing a run in flight. Two
beats send with one voice; maintenance runs while user runs fill every worker slot;
/metrics adds up the figures of the web and the worker.

Each command is read from the Procfile and run by /bin/sh, as honcho and platforms
do; only the program (`celery`, `gunicorn`, `flask`) becomes `<this python> -m ...`
so the processes import this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, inspect, select

from myapp import beat as beat_module
from myapp.extensions import db
from myapp.models import Run, utcnow
from tests.support import add_schedule, free_port, wait_for, wait_for_state

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
        # Web and workers of one host count into one directory.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
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


def ready(worker: Process) -> bool:
    """The worker has connected and consumes (its own log says so)."""
    assert worker.popen.poll() is None, worker.output()
    return " ready." in worker.output()


def test_procfile_names_its_processes():
    assert set(procfile()) == {"release", "web", "worker", "maintenance", "beat"}


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


# Three process starts (worker, beat, a second worker): on a busy 2-core machine
# each can take 40 s, more than the suite's default budget per test.
@pytest.mark.timeout(300)
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

    # beat sends the generate-data schedule; the worker records the run.
    add_schedule(app, int(procfile_env["SCHEDULE_SECONDS"]))
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


# -- beat: any number of processes, one voice ----------------------------------------

# Celery's log prefix: "[2025-01-31 12:00:00,123: INFO/MainProcess] ..." (local time).
_LOG_TIME = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/MainProcess\] "


def sends(process: Process, entry: str) -> list[datetime]:
    """When this beat sent `entry`, from its log."""
    pattern = _LOG_TIME + rf"Scheduler: Sending due task {re.escape(entry)} "
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        for stamp in re.findall(pattern, process.output())
    ]


def queued_headers(redis_url: str, queue: str, header: str) -> list[str]:
    """A header of each message waiting in a queue (those that have it)."""
    client = redis.Redis.from_url(redis_url)
    messages = (json.loads(raw)["headers"] for raw in client.lrange(queue, 0, -1))
    return [m[header] for m in messages if header in m]


def queued_tasks(redis_url: str, queue: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]


@pytest.mark.timeout(300)
def test_two_beats_send_with_one_voice_and_the_second_takes_over(
    spawn, procfile_env, app
):
    interval = float(procfile_env["SCHEDULE_SECONDS"])
    add_schedule(app, int(interval))
    bound = beat_module.takeover_bound(app.extensions["celery"])
    beats = [spawn("beat"), spawn("beat")]

    def holder() -> Process | None:
        owners = [b for b in beats if "beat: Acquired lock" in b.output()]
        assert len(owners) <= 1, "two beats hold the lock"
        return owners[0] if owners else None

    first = wait_for(holder, timeout=90, interval=0.2)
    (second,) = [b for b in beats if b is not first]
    wait_for(lambda: len(sends(first, "generate-data")) >= 3, timeout=30)
    first.popen.kill()  # SIGKILL: no chance to release the lock
    first.popen.wait()
    killed_at = datetime.now()

    wait_for(lambda: sends(second, "generate-data"), timeout=bound + 30, interval=0.2)
    wait_for(lambda: len(sends(second, "generate-data")) >= 3, timeout=30)
    second.popen.kill()
    second.popen.wait()

    before, after = sends(first, "generate-data"), sends(second, "generate-data")
    # One voice: the second beat sent nothing while the first was alive.
    assert min(after) > killed_at > max(before)
    # It took over within the bound docs/operations.md states (30 s: the lock's 25 s,
    # then at most one 5 s wait to try again), give or take the moments two
    # processes wait for a CPU on a busy machine.
    assert min(after) - killed_at <= timedelta(seconds=bound + 2)
    # No fire sent twice: each message names its schedule's fire time (on the
    # schedule's grid, whichever beat sent it), and no two name the same one...
    times = sorted(before + after)
    fires = queued_headers(procfile_env["REDIS_URL"], "celery", "myapp_fire_at")
    assert fires and len(set(fires)) == len(fires), fires
    # ...and the broker holds no more messages than the logs announce (no worker
    # ran). Beat logs a send, then publishes it: the SIGKILL may fall in between and
    # lose that one send (beat sends at most once), never add one.
    celery_queue = queued_tasks(procfile_env["REDIS_URL"], "celery")
    assert len(times) - 1 <= celery_queue.count("generate_data") <= len(times)
    # Beat's routine sends of the maintenance passes stay off its INFO log.
    assert "Sending due task reap-runs" not in first.output() + second.output()
    # The maintenance passes went to their own queue.
    assert "myapp.reap_runs" in queued_tasks(procfile_env["REDIS_URL"], "maintenance")
    assert "myapp.reap_runs" not in celery_queue


# -- maintenance cannot be starved -----------------------------------------------------


@pytest.mark.timeout(300)
def test_reaper_runs_while_long_runs_hold_every_worker_slot(
    spawn, procfile_env, app, client
):
    name = f"busy-{uuid.uuid4().hex[:8]}@test"
    worker = spawn("worker", WORKER_NAME=name, WORKER_CONCURRENCY="2")
    maintenance = spawn("maintenance", MAINTENANCE_NAME=f"m-{name}")
    for process in (worker, maintenance):
        wait_for(lambda p=process: ready(p), timeout=120, interval=0.5)

    long_runs = [
        client.post(
            "/api/tasks/generate_data/runs", json={"rows": 2, "seconds": 120}
        ).get_json()
        for _ in range(2)
    ]
    for run in long_runs:
        wait_for_state(client, run["id"], ("PROGRESS",), timeout=90)

    # A run whose worker vanished: STARTED, no heartbeat for longer than the lease.
    gone = utcnow() - timedelta(minutes=2)
    with app.app_context():
        lost = Run(
            id=str(uuid.uuid4()),
            task="summarize_data",
            params={"category": None},
            source="api",
            state="STARTED",
            attempts=1,
            created_at=gone,
            dispatched_at=gone,
            started_at=gone,
            heartbeat_at=gone,
        )
        db.session.add(lost)
        db.session.commit()
        lost_id = lost.id

    # What beat sends every 15 s.
    app.extensions["celery"].send_task("myapp.reap_runs")
    wait_for_state(client, lost_id, ("RETRY",), timeout=60)
    # Both slots were busy all along: the reaper ran beside them, not after them.
    for run in long_runs:
        assert client.get(run["status_url"]).get_json()["state"] == "PROGRESS"
        client.delete(run["status_url"])

    # The reaper says what it did; its routine receipt and success stay off INFO.
    output = maintenance.output()
    assert f"run {lost_id}: worker lost in attempt 1, sent again" in output
    assert "Task myapp.reap_runs[" not in output


# -- /metrics: the web's and the workers' figures together ---------------------------


def scrape(
    url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset], float]:
    response = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@pytest.mark.timeout(300)
def test_metrics_count_runs_by_task_source_and_state_across_processes(
    spawn, procfile_env, app
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = spawn("web", PORT=str(port))
    # The tests' admin; any role from viewer up may read /metrics.
    auth = {"Authorization": f"Bearer {app.test_client_class.default_token}"}
    name = f"metrics-{uuid.uuid4().hex[:8]}@test"
    worker_port = free_port()
    worker = spawn(
        "worker",
        WORKER_NAME=name,
        WORKER_CONCURRENCY="2",
        METRICS_PORT=str(worker_port),
    )

    def healthy() -> bool:
        assert web.popen.poll() is None, web.output()
        try:
            return requests.get(url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:  # not listening, or still booting
            return False

    wait_for(healthy, timeout=120, interval=0.2)
    wait_for(lambda: ready(worker), timeout=120, interval=0.5)
    auth = {"Authorization": f"Bearer {app.test_client_class.default_token}"}

    def start(task: str, params: dict) -> str:
        response = requests.post(
            f"{url}/api/tasks/{task}/runs", json=params, headers=auth, timeout=10
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def state(run_id: str) -> str | None:
        # None until the worker has adopted a run sent by another client.
        response = requests.get(f"{url}/api/runs/{run_id}", headers=auth, timeout=10)
        return response.json()["state"] if response.status_code == 200 else None

    done = [start("generate_data", {"rows": 3, "seconds": 0}) for _ in range(2)]
    done.append(start("summarize_data", {}))
    cancelled = start("generate_data", {"rows": 3, "seconds": 60})
    wait_for(lambda: state(cancelled) == "PROGRESS", timeout=60, interval=0.2)
    cancel = requests.delete(f"{url}/api/runs/{cancelled}", headers=auth, timeout=10)
    assert cancel.status_code == 202
    # Another Celery client's bad message: the worker records it and it fails.
    failed = str(uuid.uuid4())
    app.extensions["celery"].send_task(
        "generate_data", kwargs={"rows": -1}, task_id=failed
    )
    finished = ("SUCCESS", "FAILURE", "REVOKED")
    for run_id in [*done, cancelled, failed]:
        wait_for(lambda r=run_id: state(r) in finished, timeout=60, interval=0.2)
    assert state(failed) == "FAILURE"

    # Counted in two processes (cancel in the web, the rest in the worker's pool),
    # read in one scrape.
    assert requests.get(url + "/metrics", timeout=10).status_code == 401
    figures = scrape(url, auth)

    def value(metric: str, **labels: str) -> float:
        return figures.get((metric, frozenset(labels.items())), 0.0)

    runs = "myapp_runs_finished_total"
    assert value(runs, task="generate_data", source="api", state="SUCCESS") == 2
    assert value(runs, task="summarize_data", source="api", state="SUCCESS") == 1
    assert value(runs, task="generate_data", source="api", state="REVOKED") == 1
    assert value(runs, task="generate_data", source="external", state="FAILURE") == 1
    assert value("myapp_runs_accepted_total", task="generate_data", source="api") == 3
    assert value("myapp_runs_started_total", task="generate_data", source="api") == 3
    # Every generate_data run started, so each has a duration (the cancelled one too).
    duration = "myapp_run_duration_seconds"
    assert value(duration + "_count", task="generate_data") == 4
    assert value(duration + "_count", task="summarize_data") == 1
    assert value(duration + "_bucket", task="generate_data", le="+Inf") == 4
    assert value(duration + "_sum", task="generate_data") > 0
    http = "myapp_http_requests_total"
    assert value(http, endpoint="api.create_run", status="202") == 4
    assert value(http, endpoint="api.cancel_run", status="202") == 1
    assert value(http, endpoint="api.get_run", status="200") >= 5
    assert (
        value("myapp_http_request_duration_seconds_count", endpoint="api.create_run")
        == 4
    )
    # Read at scrape time: nothing active now, both queues known, both sources up.
    assert not [k for k in figures if k[0] == "myapp_runs_active"]
    assert ("myapp_queue_messages", frozenset({("queue", "maintenance")})) in figures
    assert value("myapp_scrape_source_up", source="database") == 1
    assert value("myapp_scrape_source_up", source="redis") == 1

    # A worker with METRICS_PORT serves its host's counters itself (for hosts
    # without a web process): the same run figures, no state read at scrape time.
    served = scrape(f"http://127.0.0.1:{worker_port}")
    for key, count in figures.items():
        if key[0] == runs:
            assert served[key] == count
    assert not [k for k in served if k[0] == "myapp_queue_messages"]


def test_gunicorns_master_does_not_load_the_app():
    # The master reads gunicorn.conf.py (which names our worker class) and only
    # forks; each worker builds the app. Loading it in the master too cost seconds
    # at every start and ~50 MB that no request uses.
    probe = (
        "import runpy, sys; runpy.run_path('gunicorn.conf.py'); "
        "print(sorted(m for m in ('dash', 'sqlalchemy', 'celery', 'myapp.runs') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
