"""The JSON API end to end: a real broker, a real worker, the run row as the truth."""

from __future__ import annotations

import logging

from tests.support import wait_for, wait_for_state


def start(client, task="generate_data", body=None, **kwargs):
    return client.post(f"/api/tasks/{task}/runs", json=body, **kwargs)


def test_lists_task_definitions_with_schemas(client):
    tasks = {t["name"]: t for t in client.get("/api/tasks").get_json()}
    assert set(tasks) == {
        "generate_data",
        "summarize_data",
        "prune_runs",
        "build_report",
    }
    rows = tasks["generate_data"]["parameters"]["properties"]["rows"]
    assert rows == {
        "type": "integer",
        "description": "How many rows to append.",
        "default": 10,
        "minimum": 1,
        "maximum": 100_000,
    }


def test_run_is_accepted_then_succeeds_and_appends(client, worker):
    response = start(client, body={"rows": 7, "seconds": 0})
    assert response.status_code == 202
    run = response.get_json()
    assert response.headers["Location"] == f"/api/runs/{run['id']}" == run["status_url"]
    # The body is the run as it stands when the response is written: a fast worker
    # may already have claimed it.
    assert run["state"] in ("PENDING", "STARTED", "PROGRESS", "SUCCESS")
    assert run["source"] == "api" and run["created_at"]
    assert run["params"] == {"rows": 7, "seconds": 0.0}

    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS", done
    assert done["result"]["rows"] == 7
    assert done["progress"] == {"current": 7, "total": 7, "message": "7 of 7 rows"}
    assert done["attempts"] == 1 and done["duration_s"] is not None
    assert done["started_at"] <= done["finished_at"]
    data = client.get(f"/api/data?run_id={run['id']}").get_json()
    assert data["total"] == 7 and {r["run_id"] for r in data["rows"]} == {run["id"]}


def test_empty_body_means_defaults(client):
    response = client.post("/api/tasks/generate_data/runs")
    assert response.status_code == 202
    assert response.get_json()["params"] == {"rows": 10, "seconds": 5.0}


def test_progress_is_visible_while_running(client, worker):
    run = start(client, body={"rows": 4, "seconds": 2}).get_json()
    mid = wait_for_state(client, run["id"], ("PROGRESS",))
    assert 0 <= mid["progress"]["current"] < 4 and mid["progress"]["total"] == 4
    assert mid["finished_at"] is None
    assert wait_for_state(client, run["id"], ("SUCCESS",))["progress"]["current"] == 4


def test_cancel_revokes_and_appends_nothing(client, worker):
    run = start(client, body={"rows": 5, "seconds": 10}).get_json()
    wait_for_state(client, run["id"], ("PROGRESS",))
    response = client.delete(run["status_url"])
    assert response.status_code == 202
    assert response.get_json()["state"] == "REVOKED"
    # The worker notices at its next progress report and stops without appending.
    assert client.delete(run["status_url"]).status_code == 409
    import time

    time.sleep(1.5)
    final = client.get(run["status_url"]).get_json()
    assert final["state"] == "REVOKED" and final["finished_at"] is not None
    assert client.get("/api/data").get_json()["total"] == 0


def test_a_cancel_is_one_info_line_in_the_worker_log(client, worker, caplog):
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    run = start(client, body={"rows": 5, "seconds": 10}).get_json()
    wait_for_state(client, run["id"], ("PROGRESS",))
    assert client.delete(run["status_url"]).status_code == 202

    def worker_said() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "celery.app.trace" and run["id"] in r.getMessage()
        ]

    lines = wait_for(worker_said, what="the worker's line about the cancelled run")
    assert [(r.levelname, r.exc_info) for r in lines] == [("INFO", None)]
    assert "cancelled" in lines[0].getMessage()


def test_a_task_that_raises_ends_failure_with_type_and_message(app, client, worker):
    # Corrupt the data set's id counter: the append fails inside Redis.
    store = app.extensions["store"]
    store.redis.set(store.key("seq"), "not-a-number")
    run = start(client, body={"rows": 2, "seconds": 0}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "FAILURE"
    assert done["error"]["type"] == "ResponseError"
    assert "not an integer" in done["error"]["message"]
    assert "Traceback" not in done["error"]["message"]


def test_unknown_run_is_404_not_pending(client):
    response = client.get("/api/runs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "run_not_found"
    assert client.delete("/api/runs/nope").status_code == 404


def test_idempotency_key_returns_the_first_run(client):
    headers = {"Idempotency-Key": "order-42"}
    first = start(client, body={"rows": 1, "seconds": 0}, headers=headers)
    again = start(client, body={"rows": 1, "seconds": 0}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert len(client.get("/api/runs").get_json()["items"]) == 1


def test_max_active_runs_answers_429(make_app):
    client = make_app(MAX_ACTIVE_RUNS=2).test_client()
    assert start(client).status_code == 202
    assert start(client).status_code == 202
    response = start(client)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "too_many_active_runs"


def test_history_lists_newest_first_with_filters_and_cursor(client):
    ids = [start(client, body={"rows": 1}).get_json()["id"] for _ in range(5)]
    start(client, task="summarize_data")
    page = client.get("/api/runs?task=generate_data&limit=2").get_json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2]
    seen = [r["id"] for r in page["items"]]
    while page["next"]:
        page = client.get(page["next"]).get_json()
        seen += [r["id"] for r in page["items"]]
    assert seen == ids[::-1]
    summaries = client.get("/api/runs?task=summarize_data").get_json()["items"]
    assert [r["task"] for r in summaries] == ["summarize_data"]
    assert client.get("/api/runs?state=PENDING&source=api").get_json()["items"]


def test_summarize_data_reports_aggregates(app, client, worker):
    store = app.extensions["store"]
    with app.app_context():
        store.commit_run("seed", [(1.0, "alpha"), (3.0, "alpha"), (5.0, "beta")])
    run = start(client, task="summarize_data", body={"category": "alpha"}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["result"] == {
        "count": 2,
        "mean": 2.0,
        "min": 1.0,
        "max": 3.0,
        "per_category": {"alpha": 2},
    }
    run = start(client, task="summarize_data").get_json()
    everything = wait_for_state(client, run["id"], ("SUCCESS",))["result"]
    assert everything["count"] == 3 and everything["max"] == 5.0
    assert everything["per_category"] == {"alpha": 2, "beta": 1, "gamma": 0, "delta": 0}
