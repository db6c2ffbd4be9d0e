"""Redis stops and starts again under a stream of starts, with the Procfile's web,
worker and beat as real processes (alone, and under `make run`'s launcher): none of
them exits, every start is answered 202 (the outbox), within 30 s of Redis's return
the runs accepted meanwhile are sent and beat sends again, and every accepted run
ends SUCCESS with its rows exactly once.

6 s is shorter than beat's lock (25 s): the holder keeps it. 60 s is longer than
the lock and than any retry period of Celery or redbeat: the lock lapses and is
taken again, and the worker has failed many reconnects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from myapp.extensions import db, get_store
from myapp.models import FINISHED_STATES, Run, utcnow
from tests.support import (
    Beat,
    Launcher,
    RedisServer,
    StartStream,
    Web,
    Worker,
    add_schedule,
    app_environ,
    wait_for,
)

# The contract: within this long of Redis's return, the runs accepted meanwhile
# are sent and beat sends again.
RETURN_BOUND_S = 30
# A start every quarter second: about 240 runs wait in the outbox in a 60 s outage.
START_INTERVAL_S = 0.25
ROWS = 3


@pytest.fixture
def outage_app(make_app, shipped_redis, fast_recovery):
    # Every start of the outage stays active (PENDING) until Redis is back: the
    # active-run limit must not turn them into 429s. beat's own run every 3 s (a
    # schedule row: beat sends the schedules table) shows that it sends again.
    app = make_app(
        REDIS_URL=shipped_redis.url,
        MAX_ACTIVE_RUNS=2000,
        **fast_recovery,
    )
    add_schedule(app, 3)
    return app


def process_env(app, tmp_path) -> dict[str, str]:
    env = app_environ(app)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    # One gunicorn worker: a 2-core machine runs web, worker, beat and the test.
    env["WEB_CONCURRENCY"] = "1"
    return env


def _query(app, statement) -> Any:
    with app.app_context():
        try:
            return db.session.execute(statement).all()
        finally:
            db.session.remove()


def in_outbox(app, ids: list[str]) -> int:
    """How many of these runs still wait for their first message."""
    ((count,),) = _query(
        app,
        select(func.count())
        .select_from(Run)
        .where(Run.id.in_(ids), Run.state == "PENDING", Run.dispatched_at.is_(None)),
    )
    return count


def beat_runs_since(app, since) -> int:
    ((count,),) = _query(
        app,
        select(func.count())
        .select_from(Run)
        .where(Run.source == "beat", Run.created_at > since),
    )
    return count


def ride_out(
    app,
    redis_server: RedisServer,
    url: str,
    outage_s: float,
    alive: Callable[[], dict[str, bool]],
) -> dict[str, float]:
    """Stop Redis for `outage_s` under a stream of starts, start it again; check
    the contract's promises and return what was measured."""
    token = app.test_client_class.default_token
    stream = StartStream(url, token, {"rows": ROWS, "seconds": 0}, START_INTERVAL_S)
    try:
        wait_for(lambda: len(stream.accepted()) >= 5, 30, 0.1, "starts before")
        redis_server.stop()
        down = time.monotonic()
        time.sleep(outage_s)
        alive_during = alive()
        redis_server.start()
        back, back_at = time.monotonic(), utcnow()
        accepted_meanwhile = stream.accepted(since=down, until=back)

        # Within 30 s: the outbox is empty and beat has sent a new run.
        wait_for(
            lambda: in_outbox(app, stream.accepted(until=back)) == 0,
            RETURN_BOUND_S,
            0.5,
            "the outbox sent",
        )
        outbox_sent_s = time.monotonic() - back
        wait_for(
            lambda: beat_runs_since(app, back_at),
            RETURN_BOUND_S - outbox_sent_s,
            0.5,
            "beat sending again",
        )
        beat_s = time.monotonic() - back
        # Starts go on after the return.
        wait_for(lambda: len(stream.accepted(since=back)) >= 5, 30, 0.1, "starts after")
    finally:
        stream.stop()

    # Nothing was refused, failed or hung: the database was up, so every start was
    # accepted, through the outbox while Redis was away.
    statuses = stream.statuses()
    assert set(statuses) == {202}, statuses
    assert len(accepted_meanwhile) >= outage_s / START_INTERVAL_S / 2
    assert all(alive_during.values()), alive_during

    ids = stream.accepted()

    def finished() -> list[Run] | None:
        rows = [r for (r,) in _query(app, select(Run).where(Run.id.in_(ids)))]
        if len(rows) == len(ids) and all(r.state in FINISHED_STATES for r in rows):
            return rows
        return None

    # The worker runs a few of these small runs a second on this machine; the
    # bound leaves it three times what it needs on a busy one.
    done = wait_for(finished, 30 + len(ids) * 0.5, 0.5, "every accepted run finished")
    all_done_s = time.monotonic() - back
    assert {r.state for r in done} == {"SUCCESS"}, [
        (r.id, r.state, r.error) for r in done if r.state != "SUCCESS"
    ]
    # Each run's rows are in the data set exactly once, and nothing else is but
    # beat's own runs.
    with app.app_context():
        store = get_store()
        assert all(store.run_span(r.id)[1] == ROWS for r in done)
        successes = db.session.scalars(select(Run).where(Run.state == "SUCCESS"))
        assert store.total() == sum(r.result["rows"] for r in successes)
        db.session.remove()
    assert all(alive().values()), alive()
    ready = requests.get(url + "/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["checks"]["beat"] == "ok", ready
    return {
        "accepted": len(ids),
        "accepted_meanwhile": len(accepted_meanwhile),
        "outbox_sent_s": round(outbox_sent_s, 1),
        "beat_sends_s": round(beat_s, 1),
        "all_done_s": round(all_done_s, 1),
    }


def assert_outage_logged_once(beat_log: str) -> None:
    # One line when it began and one when it ended, not a traceback per pass.
    assert beat_log.count("beat: Redis unreachable") == 1, beat_log[-3000:]
    assert beat_log.count("beat: Redis is back") == 1
    assert "beat raised exception" not in beat_log


@pytest.mark.timeout(420)
@pytest.mark.parametrize("outage_s", [6, 60])
def test_procfile_processes_ride_out_a_redis_outage(
    outage_app, shipped_redis, tmp_path, outage_s
):
    env = process_env(outage_app, tmp_path)
    web = Web("web", env, tmp_path / "web.log")
    worker = Worker("w1", env, tmp_path / "worker.log")
    beat = Beat("beat", env, tmp_path / "beat.log")
    processes = {"web": web, "worker": worker, "beat": beat}
    try:
        wait_for(beat.holds_lock, 60, 0.2, "beat holding the lock")
        measured = ride_out(
            outage_app,
            shipped_redis,
            web.url,
            outage_s,
            lambda: {name: p.alive() for name, p in processes.items()},
        )
        print(f"redis down {outage_s} s, Procfile processes: {measured}")
        assert_outage_logged_once(beat.log())
        assert "Unrecoverable error" not in worker.log()
        if outage_s > 25:
            # The lock lapsed during the outage and this beat took it again.
            assert beat.log().count("beat: Acquired lock") == 2
    finally:
        for process in processes.values():
            process.stop()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("outage_s", [6, 60])
def test_make_run_rides_out_a_redis_outage(
    outage_app, shipped_redis, tmp_path, outage_s
):
    env = process_env(outage_app, tmp_path)
    env["WORKER_CONCURRENCY"] = "2"
    launcher = Launcher("make-run", env, tmp_path / "launcher.log")
    try:
        before = {name: [p.pid for p in ps] for name, ps in launcher.roles().items()}
        assert all(before.values()), before

        def alive() -> dict[str, bool]:
            # honcho stops every process when one exits: the launcher alive, and
            # each role's processes the same ones as before the outage.
            roles = {n: {p.pid for p in ps} for n, ps in launcher.roles().items()}
            return {
                "launcher": launcher.alive(),
                **{n: set(before[n]) <= roles[n] for n in before},
            }

        wait_for(
            lambda: "beat: Acquired lock" in launcher.log(), 60, 0.2, "beat sending"
        )
        measured = ride_out(outage_app, shipped_redis, launcher.url, outage_s, alive)
        print(f"redis down {outage_s} s, make run: {measured}")
        assert_outage_logged_once(launcher.log())
        assert "Unrecoverable error" not in launcher.log()
    finally:
        launcher.stop()
