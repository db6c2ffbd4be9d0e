"""`flask --app wsgi tasks ...` through Click's runner and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import select

from myapp.extensions import db
from myapp.models import Run
from tests.support import wait_for, wait_for_state

ROOT = Path(__file__).resolve().parents[1]


def cli_runs(app) -> list[Run]:
    with app.app_context():
        found = db.session.scalars(select(Run).where(Run.source == "cli")).all()
        db.session.expunge_all()
        return list(found)


# -- Click's runner -------------------------------------------------------------


def test_list_prints_every_task_with_its_parameters(runner):
    result = runner.invoke(args=["tasks", "list"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "generate_data: Append random rows" in out
    assert "rows=… (whole number; 1 to 100000; default 10)" in out
    assert "seconds=… (number; 0 to 600; default 5)" in out
    assert "summarize_data:" in out
    assert "category=… (one of alpha, beta, gamma, delta; default none)" in out
    assert "prune_runs:" in out and "needs the admin role" in out
    assert "older_than_days=… (whole number; 1 to 36500; default 30)" in out


def test_run_records_a_cli_run_and_prints_its_status_url(app, runner):
    result = runner.invoke(
        args=["tasks", "run", "generate_data", "rows=3", "seconds=0.5"]
    )
    assert result.exit_code == 0, result.output
    (run,) = cli_runs(app)
    assert run.params == {"rows": 3, "seconds": 0.5}
    assert f"run {run.id} PENDING" in result.output
    assert f"status: /api/runs/{run.id}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate_data", "rows=0"], "rows: must be at least 1"),
        (["generate_data", "rows=ten"], "rows: must be an integer"),
        (["generate_data", "colour=red"], "colour: is not a parameter of"),
        (["generate_data", "rows"], "'rows' is not key=value"),
        (["no_such_task"], "no task named 'no_such_task'"),
        (["summarize_data", "category=zeta"], "category: must be one of"),
    ],
)
def test_bad_arguments_exit_2_with_the_field_message(app, runner, args, message):
    result = runner.invoke(args=["tasks", "run", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert cli_runs(app) == []


def test_wait_shows_progress_and_exits_0_on_success(app, runner, worker):
    result = runner.invoke(
        args=["tasks", "run", "generate_data", "rows=5", "seconds=1", "--wait"]
    )
    assert result.exit_code == 0, result.output
    assert "100% SUCCESS 5 of 5 rows" in result.output
    assert '"rows": 5' in result.output
    (run,) = cli_runs(app)
    assert run.state == "SUCCESS"


# -- as a subprocess: what a user's terminal sees ------------------------------------


def flask_cli(app, *args: str, **env: str) -> subprocess.Popen:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": app.config["REDIS_URL"],
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": "test-secret",
        "INSTANCE_PATH": app.instance_path,
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "tasks", "run", *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_subprocess_wait_exits_0_on_success(app, worker):
    process = flask_cli(app, "generate_data", "rows=4", "seconds=0", "--wait")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "SUCCESS" in out and '"rows": 4' in out


def test_subprocess_wait_exits_nonzero_when_the_run_is_cancelled(app, client, worker):
    process = flask_cli(app, "generate_data", "rows=5", "seconds=30", "--wait")
    run = wait_for(lambda: cli_runs(app), timeout=30)[0]
    wait_for_state(client, run.id, ("PROGRESS",))
    assert client.delete(f"/api/runs/{run.id}").status_code == 202
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "REVOKED" in out and "the run was cancelled" in err


@pytest.fixture
def strict_worker(make_app) -> Iterator[None]:
    """A worker whose configuration allows fewer rows than the CLI's."""
    app = make_app(MAX_ROWS_PER_RUN=5)
    with start_worker(
        app.extensions["celery"],
        pool="solo",
        perform_ping_check=True,
        loglevel="WARNING",
    ):
        yield


def test_subprocess_wait_exits_nonzero_on_failure(app, strict_worker):
    # The CLI accepts 8 rows (its limit is the default); the worker, configured
    # with a lower limit, refuses them: the run ends FAILURE with the field message.
    process = flask_cli(app, "generate_data", "rows=8", "seconds=0", "--wait")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    assert "FAILURE" in out
    assert "error: ValidationError: rows: must be at most 5" in err


def test_subprocess_bad_arguments_exit_2(app):
    process = flask_cli(app, "generate_data", "seconds=-1")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "seconds: must be at least 0" in err
    assert cli_runs(app) == []
