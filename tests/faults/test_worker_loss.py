"""A worker killed with SIGKILL, main process or pool child, loses no run.

Runs in flight are recovered by the reaper (main process: their messages sit in
the dead consumer's unacked set for the 30 min visibility timeout) or by the
broker (pool child: `task_reject_on_worker_lost` requeues the message), and the
data set ends with exactly the rows of the runs that succeeded.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

from myapp.extensions import db, get_store
from myapp.models import Run, utcnow
from myapp.runs import reaper
from tests.support import settle, wait_for

# The bound docs/reliability.md states, for these settings: lease 3 s + reaper
# pass + a run of 3 s, twice over, with room for a loaded 2-core machine.
RECOVERY_BOUND_S = 90


def start_runs(client, count: int, rows: int, seconds: float) -> list[str]:
    ids = []
    for _ in range(count):
        response = client.post(
            "/api/tasks/generate_data/runs", json={"rows": rows, "seconds": seconds}
        )
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def in_progress(app, ids, count: int):
    def check():
        with app.app_context():
            rows = db.session.query(Run).filter(Run.id.in_(ids)).all()
            busy = [r.id for r in rows if r.state == "PROGRESS"]
            db.session.remove()
        return busy if len(busy) >= count else None

    return wait_for(check, 60, 0.2, f"{count} runs in progress")


def assert_data_matches_successes(app, done: dict[str, Run], rows: int) -> None:
    successes = [r for r in done.values() if r.state == "SUCCESS"]
    with app.app_context():
        store = get_store()
        assert store.total() == rows * len(successes)
        for run in done.values():
            span = store.run_span(run.id)
            expected = rows if run.state == "SUCCESS" else 0
            assert (span[1] if span else 0) == expected, (run.id, run.state, span)


def test_sigkill_of_worker_main_process_loses_no_run(
    make_app, shipped_redis, workers, fast_recovery
):
    app = make_app(REDIS_URL=shipped_redis.url, **fast_recovery)
    client = app.test_client()
    first = workers(app, "w1")
    ids = start_runs(client, 6, rows=20, seconds=3)
    killed = in_progress(app, ids, 2)

    first.kill_main()
    workers(app, "w2")
    done, reaped = settle(app, ids, timeout=RECOVERY_BOUND_S)

    assert {r.state for r in done.values()} == {"SUCCESS"}, done
    # The runs in flight were recovered by the reaper and counted a second attempt.
    assert set(killed) <= reaped
    assert all(done[i].attempts == 2 for i in killed)
    assert_data_matches_successes(app, done, rows=20)


def test_sigkill_of_pool_children_loses_no_run(
    make_app, shipped_redis, workers, fast_recovery
):
    app = make_app(REDIS_URL=shipped_redis.url, **fast_recovery)
    client = app.test_client()
    worker = workers(app, "w1")
    ids = start_runs(client, 5, rows=15, seconds=3)
    killed = in_progress(app, ids, 2)

    children = worker.children()
    assert len(children) == 2
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    done, _ = settle(app, ids, timeout=RECOVERY_BOUND_S)

    assert {r.state for r in done.values()} == {"SUCCESS"}, done
    assert all(done[i].attempts >= 2 for i in killed)
    assert "WorkerLostError" in worker.log() or "Worker exited" in worker.log()
    assert_data_matches_successes(app, done, rows=15)


def test_sigkill_mid_commit_then_the_run_again_leaves_exactly_its_rows(
    make_app, shipped_redis, workers, fast_recovery
):
    """The biggest run's worker dies while staging its rows: nothing is visible,
    and the run's next attempt replaces the staging and appends exactly once."""
    rows = 100_000
    app = make_app(REDIS_URL=shipped_redis.url, **fast_recovery)
    store = app.extensions["store"]
    first = workers(app, "w1", concurrency=1)
    (run_id,) = start_runs(app.test_client(), 1, rows=rows, seconds=0)

    staging = store.key("stage", run_id)
    wait_for(lambda: store.redis.exists(staging), 120, 0.001, "the run staging")
    first.kill()  # SIGKILL of the whole worker, the pool process mid-commit
    assert store.redis.exists(staging), "killed after publishing, not mid-commit"
    assert store.total() == 0 and store.page(sort="value").total == 0

    workers(app, "w2", concurrency=1)
    done, reaped = settle(app, [run_id], timeout=RECOVERY_BOUND_S)
    assert done[run_id].state == "SUCCESS" and run_id in reaped
    assert done[run_id].attempts == 2
    assert store.total() == rows and store.run_span(run_id) == (1, rows)
    assert list(store.redis.scan_iter(match=store.key("stage") + "*")) == []


def lost_run(attempts: int, started_ago: float, heartbeat_ago: float) -> Run:
    now = utcnow()
    run = Run(
        id=f"lost-{attempts}-{started_ago}",
        task="generate_data",
        params={"rows": 1, "seconds": 0},
        source="api",
        state="PROGRESS",
        attempts=attempts,
        created_at=now - timedelta(seconds=started_ago + 1),
        dispatched_at=now - timedelta(seconds=started_ago + 1),
        started_at=now - timedelta(seconds=started_ago),
        heartbeat_at=now - timedelta(seconds=heartbeat_ago),
    )
    db.session.add(run)
    db.session.commit()
    return run


def test_reaper_gives_up_after_max_attempts_and_past_the_time_limit(
    make_app, fast_recovery
):
    app = make_app(**fast_recovery)
    with app.app_context():
        hard = reaper.hard_time_limit()
        exhausted = lost_run(attempts=3, started_ago=10, heartbeat_ago=5).id
        overdue = lost_run(attempts=1, started_ago=hard + 61, heartbeat_ago=0.1).id
        alive = lost_run(attempts=1, started_ago=10, heartbeat_ago=0.1).id

        report = reaper.reap_runs()

        assert sorted(report.failed) == sorted([exhausted, overdue])
        assert report.resent == []
        runs = {r.id: r for r in db.session.query(Run)}
        assert runs[exhausted].state == "FAILURE"
        assert runs[exhausted].error_type == "WorkerLost"
        assert "after 3 attempts" in runs[exhausted].error_message
        assert runs[overdue].state == "FAILURE"
        assert runs[overdue].error_type == "TimeLimitExceeded"
        assert runs[alive].state == "PROGRESS"
