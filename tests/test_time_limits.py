"""Time limits only work on the prefork pool, so this test runs one."""

from __future__ import annotations

from tests.support import wait_for_state


def test_a_run_over_its_soft_time_limit_ends_failure(make_app, worker_for):
    app = make_app(CELERY={"task_soft_time_limit": 1, "task_time_limit": 10})
    client = app.test_client()
    with worker_for(app, pool="prefork"):
        run = client.post(
            "/api/tasks/generate_data/runs", json={"rows": 2, "seconds": 5}
        ).get_json()
        done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"), timeout=30)
    assert done["state"] == "FAILURE"
    assert done["error"] == {
        "type": "TimeLimitExceeded",
        "message": "the run took longer than 1 s",
    }
    assert client.get("/api/data").get_json()["total"] == 0
