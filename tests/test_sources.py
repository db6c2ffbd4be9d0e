"""Every run is recorded, whatever started it, and appends its data exactly once."""

from __future__ import annotations

from sqlalchemy import update

from myapp.extensions import db
from myapp.models import Run
from myapp.schedules.sender import ScheduleSender
from tests.support import add_schedule, wait_for, wait_for_state


def runs_of(client, **filters):
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return client.get(f"/api/runs?{query}").get_json()["items"]


def test_cli_run_is_recorded_and_waits_to_success(app, client, runner, worker):
    result = runner.invoke(
        args=["tasks", "run", "generate_data", "rows=3", "seconds=0", "--wait"]
    )
    assert result.exit_code == 0, result.output
    [run] = runs_of(client, source="cli")
    assert run["state"] == "SUCCESS" and run["params"] == {"rows": 3, "seconds": 0.0}
    assert f"status: /api/runs/{run['id']}" in result.output
    assert "100%" in result.output


def test_cli_bad_arguments_exit_2_naming_the_field(runner):
    result = runner.invoke(args=["tasks", "run", "generate_data", "rows=lots"])
    assert result.exit_code == 2
    assert "rows: must be an integer" in result.output
    result = runner.invoke(args=["tasks", "run", "nope"])
    assert result.exit_code == 2 and "no task named 'nope'" in result.output
    result = runner.invoke(args=["tasks", "run", "generate_data", "rows"])
    assert result.exit_code == 2 and "is not key=value" in result.output


def test_a_schedule_fire_is_recorded_with_source_beat(app, client, worker):
    schedule_id = add_schedule(app, 3600)
    # Exactly what beat does on each pass: send the due fires of the table.
    ScheduleSender(app, max_delay=5).tick()
    run = wait_for(lambda: runs_of(client, source="beat"))[0]
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"), timeout=30)
    assert done["state"] == "SUCCESS" and done["task"] == "generate_data"
    assert done["params"] == {} and done["result"]["rows"] == 10
    assert done["schedule_id"] == schedule_id and done["fire_at"]


def test_external_send_task_is_recorded_and_validated(app, client, worker):
    celery_app = app.extensions["celery"]
    good = celery_app.send_task("generate_data", kwargs={"rows": 3, "seconds": 0})
    assert good.get(timeout=20)["rows"] == 3
    run = client.get(f"/api/runs/{good.id}").get_json()
    assert run["source"] == "external" and run["state"] == "SUCCESS"

    bad = celery_app.send_task("generate_data", kwargs={"rows": -1})
    done = wait_for_state(client, bad.id, ("SUCCESS", "FAILURE"))
    assert done["state"] == "FAILURE"
    assert done["error"] == {
        "type": "ValidationError",
        "message": "rows: must be at least 1",
    }
    assert client.get(f"/api/data?run_id={bad.id}").get_json()["total"] == 0


def test_a_run_delivered_twice_appends_once(app, client, worker):
    run = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 5, "seconds": 0}
    ).get_json()
    wait_for_state(client, run["id"], ("SUCCESS",))
    # The same message again, as a broker redelivers it after a lost ack.
    celery_app = app.extensions["celery"]
    again = celery_app.send_task(
        "generate_data", kwargs=run["params"], task_id=run["id"]
    )
    again.get(timeout=20)
    assert client.get("/api/data").get_json()["total"] == 5
    assert client.get(run["status_url"]).get_json()["attempts"] == 1


def test_a_run_redelivered_after_its_worker_died_runs_again_but_appends_once(
    app, client, worker
):
    run = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 4, "seconds": 0}
    ).get_json()
    wait_for_state(client, run["id"], ("SUCCESS",))
    # The worker appended, then died before recording SUCCESS: the row still says
    # STARTED and its heartbeat has gone stale.
    with app.app_context():
        db.session.execute(
            update(Run)
            .where(Run.id == run["id"])
            .values(state="STARTED", finished_at=None, heartbeat_at=None, result=None)
        )
        db.session.commit()
    celery_app = app.extensions["celery"]
    celery_app.AsyncResult(run["id"]).forget()
    redelivered = celery_app.send_task(
        "generate_data", kwargs=run["params"], task_id=run["id"]
    )
    # The re-run generated new rows, but the commit found the run already appended.
    assert redelivered.get(timeout=20)["rows"] == 4
    done = client.get(run["status_url"]).get_json()
    assert done["state"] == "SUCCESS" and done["attempts"] == 2
    assert client.get("/api/data").get_json()["total"] == 4


def test_every_source_lands_in_one_history(app, client, runner, worker):
    client.post("/api/tasks/generate_data/runs", json={"rows": 1, "seconds": 0})
    runner.invoke(args=["tasks", "run", "generate_data", "rows=1", "seconds=0"])
    app.extensions["celery"].send_task(
        "generate_data", kwargs={"rows": 1, "seconds": 0}
    )
    items = wait_for(
        lambda: (
            (r := runs_of(client))
            and len(r) == 3
            and all(x["state"] == "SUCCESS" for x in r)
            and r
        )
    )
    assert {r["source"] for r in items} == {"api", "cli", "external"}
    assert client.get("/api/data").get_json()["total"] == 3
