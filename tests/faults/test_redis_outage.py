"""Redis stops under a stream of starts: every start is accepted, nothing is a 500,
/readyz says why it is not ready, and everything recovers without a restart."""

from __future__ import annotations

import time

from myapp.extensions import get_store
from tests.support import settle

OUTAGE_SECONDS = 5


def test_redis_outage_under_a_stream_of_starts(
    make_app, shipped_redis, workers, fast_recovery
):
    # A real rate limit, so its Redis storage going away is part of the test.
    app = make_app(
        REDIS_URL=shipped_redis.url, START_RATE_LIMIT="1000/minute", **fast_recovery
    )
    client = app.test_client()
    workers(app, "w1")
    responses = []
    accepted: list[str] = []

    def start() -> None:
        began = time.monotonic()
        response = client.post(
            "/api/tasks/generate_data/runs", json={"rows": 3, "seconds": 0.2}
        )
        responses.append((round(time.monotonic() - began, 3), response.status_code))
        if response.status_code == 202:
            accepted.append(response.get_json()["id"])

    for _ in range(3):
        start()
    assert client.get("/readyz").status_code == 200

    shipped_redis.stop()
    during: dict[str, int] = {}
    deadline = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < deadline:
        start()
        run = client.get(accepted[-1] and f"/api/runs/{accepted[-1]}")
        data = client.get("/api/data?limit=5")
        ready = client.get("/readyz")
        for name, response in (("run", run), ("data", data), ("readyz", ready)):
            during[name] = response.status_code
            assert response.is_json, (name, response.status_code, response.data[:200])
        time.sleep(0.2)
    outage_runs = client.get("/api/runs?limit=200").get_json()["items"]
    shipped_redis.start()
    for _ in range(3):
        start()

    # While Redis was down: starts answered 202 (the run waits in the outbox), the
    # run history still answered, the data set and /readyz said 503 and why.
    assert during == {"run": 200, "data": 503, "readyz": 503}
    assert "redis" in ready.get_json()["error"]["fields"]
    assert all(status == 202 for _, status in responses), responses
    assert len(accepted) >= 3 + 5 + 3
    assert any(r["state"] == "PENDING" for r in outage_runs)

    done, _ = settle(app, accepted, timeout=90)
    assert {r.state for r in done.values()} == {"SUCCESS"}, done
    assert client.get("/readyz").status_code == 200
    with app.app_context():
        assert get_store().total() == 3 * len(accepted)
