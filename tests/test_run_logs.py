"""A run's own log (ctx.log) and following a run with ?wait=: real worker, real
Redis, real database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from myapp.extensions import db
from myapp.models import Run, RunLogBatch, utcnow
from tests.support import sign_in, wait_for, wait_for_state

TASKS = "tests.log_tasks"


def start(client, **params):
    response = client.post("/api/tasks/chatty/runs", json=params)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def logs(client, run_id, after=0):
    response = client.get(f"/api/runs/{run_id}/logs?after={after}")
    assert response.status_code == 200
    return response.get_json()


def test_lines_are_readable_while_the_run_is_in_flight_and_in_order_after(
    make_app, worker_for
):
    app = make_app(TASK_MODULES=TASKS)
    client = app.test_client()
    with worker_for(app):
        run_id = start(client, lines=2, hold=4)
        # Within a second of being logged, while the task still holds.
        first = wait_for(lambda: logs(client, run_id)["lines"] or None, timeout=10)
        assert client.get(f"/api/runs/{run_id}").get_json()["state"] != "SUCCESS"
        assert [line["message"] for line in first][:2] == [
            "line 1 " + "x" * 9,
            "line 2 " + "x" * 9,
        ]
        done = wait_for_state(client, run_id, ("SUCCESS",), timeout=30)
    page = logs(client, run_id)
    assert [(ln["seq"], ln["level"]) for ln in page["lines"]] == [
        (1, "INFO"),
        (2, "INFO"),
        (3, "ERROR"),
        (4, "WARNING"),
    ]
    # The exception's type and message, never its traceback.
    assert page["lines"][2]["message"] == "caught (ValueError: it broke)"
    assert page["next"] == 4 and page["dropped"] == 0
    assert logs(client, run_id, after=2)["lines"][0]["seq"] == 3
    assert logs(client, run_id, after=4) == {"lines": [], "next": 4, "dropped": 0}
    assert done["result"] == {"logged": 4}


def test_only_the_limit_is_kept_long_lines_are_cut_and_the_rest_counted(
    make_app, worker_for
):
    app = make_app(TASK_MODULES=TASKS, RUN_LOG_MAX_LINES=10)
    client = app.test_client()
    with worker_for(app):
        run_id = start(client, lines=25, width=3000)
        wait_for_state(client, run_id, ("SUCCESS",), timeout=30)
    page = logs(client, run_id)
    assert [ln["seq"] for ln in page["lines"]] == list(range(1, 11))
    assert {len(ln["message"]) for ln in page["lines"]} == {1000}
    assert page["dropped"] == 25 + 2 - 10


def test_logs_are_deleted_with_the_run_by_prune(make_app, worker_for):
    app = make_app(TASK_MODULES=TASKS)
    client = app.test_client()
    with worker_for(app):
        run_id = start(client)
        wait_for_state(client, run_id, ("SUCCESS",), timeout=30)
        with app.app_context():
            db.session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(finished_at=utcnow() - timedelta(days=40))
            )
            db.session.commit()
        prune = client.post(
            "/api/tasks/prune_runs/runs", json={"older_than_days": 30}
        ).get_json()
        wait_for_state(client, prune["id"], ("SUCCESS",), timeout=30)
    assert client.get(f"/api/runs/{run_id}/logs").status_code == 404
    with app.app_context():
        left = db.session.scalar(
            select(func.count()).where(RunLogBatch.run_id == run_id)
        )
    assert left == 0


def test_wait_answers_at_a_change_at_the_end_and_when_time_is_up(make_app, worker_for):
    app = make_app(TASK_MODULES=TASKS)
    client = app.test_client()
    # No worker yet: the run stays PENDING, so the wait runs out.
    run_id = start(client, hold=2)
    timed_out = client.get(f"/api/runs/{run_id}?wait=1").get_json()
    assert timed_out["state"] == "PENDING"
    assert client.get(f"/api/runs/{run_id}?wait=31").status_code == 400
    assert client.get(f"/api/runs/{run_id}?wait=soon").status_code == 400

    answers: list[dict] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            client.get(f"/api/runs/{run_id}?wait=30").get_json()
        )
    )
    waiter.start()
    with worker_for(app):
        waiter.join(timeout=25)
        # Answered at the first change (the worker took it), long before 30 s.
        assert not waiter.is_alive() and answers[0]["state"] in ("STARTED", "PROGRESS")
        done = wait_for_state(client, run_id, ("SUCCESS",), timeout=30)
    # A finished run answers at once, whatever the wait.
    assert client.get(f"/api/runs/{run_id}?wait=30").get_json() == done


def test_forty_waiters_do_not_hold_healthz_or_a_start(web_for, make_app):
    app = make_app(TASK_MODULES=TASKS)
    client = app.test_client()
    run_id = start(client)  # PENDING: no worker, so every waiter could wait 20 s
    base, headers = web_for(app)
    answered: list[int] = []

    def wait() -> None:
        r = requests.get(f"{base}/api/runs/{run_id}?wait=20", headers=headers)
        answered.append(r.status_code)

    waiters = [threading.Thread(target=wait) for _ in range(40)]
    for thread in waiters:
        thread.start()
    # The process lets two of them wait; the others answered at once.
    wait_for(lambda: len(answered) >= 38 or None, timeout=15)
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    started = requests.post(
        f"{base}/api/tasks/chatty/runs", json={}, headers=headers, timeout=5
    )
    assert started.status_code == 202
    assert sum(t.is_alive() for t in waiters) <= 2  # RUN_WAITERS_PER_PROCESS
    for thread in waiters:
        thread.join(timeout=30)
    assert answered == [200] * 40


def test_cli_wait_prints_the_log_lines(make_app, worker_for):
    app = make_app(TASK_MODULES=TASKS)
    runner = app.test_cli_runner()
    with worker_for(app):
        result = runner.invoke(args=["tasks", "run", "chatty", "lines=2", "--wait"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "INFO: line 1 xxxxxxxxx" in out and "INFO: line 2 xxxxxxxxx" in out
    assert "ERROR: caught (ValueError: it broke)" in out
    assert out.index("line 2") < out.index("WARNING: done") < out.index("result:")


# The HTML run page, in a real browser: the lines come in while the run holds.
from tests.test_views import browser, live_server, read  # noqa: E402, F401


@pytest.fixture
def app(make_app):
    return make_app(TASK_MODULES=TASKS)


def test_run_page_shows_the_log_live(app, browser, live_server, worker, browser_login):  # noqa: F811
    sign_in(browser, live_server.url, *browser_login)
    # The page reads the log every second: the lines come while the task holds.
    run_id = start(app.test_client(), lines=2, hold=4)
    browser.get(f"{live_server.url}/runs/{run_id}")
    wait_for(lambda: "line 2" in read(browser, "run-log-lines"), timeout=15)
    assert read(browser, "run-state") != "finished"
    wait_for(lambda: "WARNING done" in read(browser, "run-log-lines"), timeout=30)
    text = read(browser, "run-log-lines")
    assert text.index("line 1") < text.index("line 2") < text.index("caught")
