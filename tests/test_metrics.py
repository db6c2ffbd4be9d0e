"""Who may read /metrics, what a scrape shows in one process, and what /readyz says
about beat. The figures of real processes are checked in test_procfile.py."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from myapp import beat, create_app
from myapp.extensions import get_redis


def families(response) -> dict[str, list]:
    return {
        family.name: family.samples
        for family in text_string_to_metric_families(response.get_data(as_text=True))
    }


def test_metrics_need_a_viewer_unless_public(app, make_user):
    response = app.test_client(token=None).get("/metrics")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "myapp_" not in response.get_data(as_text=True)
    _, viewer = make_user("viewer")
    response = app.test_client(token=viewer).get("/metrics")
    assert response.status_code == 200 and "myapp_" in response.get_data(as_text=True)


def test_metrics_public_switch_from_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("METRICS_PUBLIC", "1")
    assert make_app().test_client(token=None).get("/metrics").status_code == 200
    monkeypatch.setenv("METRICS_PUBLIC", "2")
    with pytest.raises(RuntimeError, match="METRICS_PUBLIC must be at most 1, got 2"):
        create_app({"TESTING": True})


def test_scrape_counts_requests_by_endpoint_and_reads_live_state(make_app):
    app = make_app(METRICS_PUBLIC=True)
    client = app.test_client()
    client.get("/api/runs/no-such-run")
    client.post("/api/tasks/generate_data/runs", json={"rows": 0})

    found = families(client.get("/metrics"))
    requests_by = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in found["myapp_http_requests"]
        if s.name == "myapp_http_requests_total"
    }
    assert requests_by[("api.get_run", "404")] >= 1
    assert requests_by[("api.create_run", "422")] >= 1
    latency = {s.name for s in found["myapp_http_request_duration_seconds"]}
    assert "myapp_http_request_duration_seconds_bucket" in latency
    # Read at scrape time from Redis and the database.
    queues = {s.labels["queue"] for s in found["myapp_queue_messages"]}
    assert queues == {"celery", "maintenance"}
    up = {s.labels["source"]: s.value for s in found["myapp_scrape_source_up"]}
    assert up == {"database": 1, "redis": 1}
    assert "myapp_runs_active" in found


def test_beat_tick_age_in_metrics_and_readyz(make_app):
    app = make_app(METRICS_PUBLIC=True)
    client = app.test_client()
    celery_app = app.extensions["celery"]
    bound = beat.takeover_bound(celery_app)

    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["beat"].startswith("not ticked yet")
    assert "myapp_beat_last_tick_age_seconds" not in families(client.get("/metrics"))

    with app.app_context():
        redis = get_redis()
    redis.set(beat.tick_key(celery_app), repr(time.time() - 2))
    assert client.get("/readyz").get_json()["checks"]["beat"] == "ok"
    (age,) = families(client.get("/metrics"))["myapp_beat_last_tick_age_seconds"]
    assert 2 <= age.value < bound

    redis.set(beat.tick_key(celery_app), repr(time.time() - bound - 60))
    late = client.get("/readyz")
    # Beat being late is said, but the web stays in service.
    assert late.status_code == 200
    assert late.get_json()["checks"]["beat"].startswith("late: last tick")
    (age,) = families(client.get("/metrics"))["myapp_beat_last_tick_age_seconds"]
    assert age.value > bound
