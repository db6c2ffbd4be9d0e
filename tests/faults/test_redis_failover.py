"""Redis Sentinel failover under load: a primary, a replica and three sentinels on
127.0.0.1, the Procfile's web, worker and beat finding the primary through the
sentinels (REDIS_SENTINELS), a stream of starts with runs in flight; the primary is
SIGKILLed. Every run answered 202 ends SUCCESS exactly once with its rows exactly
once on the new primary, starts are answered 202 again within 30 s of the
promotion, nothing answers 5xx but 503, and every process is alive after."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from myapp.extensions import db, get_store
from myapp.models import FINISHED_STATES, Run, utcnow
from myapp.store import DataStore, ReplicationUnconfirmed
from tests.support import (
    Beat,
    RedisServer,
    SentinelServer,
    StartStream,
    Web,
    Worker,
    add_schedule,
    app_environ,
    wait_for,
)

# The contract: starts are answered 202 again within this long of the promotion.
PROMOTION_BOUND_S = 30
ROWS = 3


class SentinelRedis:
    """A primary with one replica in sync, watched by three sentinels that have
    found the replica and each other (so two of them can agree to fail over)."""

    def __init__(self, tmp_path) -> None:
        self.primary = RedisServer(tmp_path / "primary").start()
        self.replica = RedisServer(tmp_path / "replica").start()
        self.replica.replicate(self.primary)
        self.sentinels = [
            SentinelServer(tmp_path / f"sentinel{i}", self.primary.port).start()
            for i in range(3)
        ]
        for sentinel in self.sentinels:
            wait_for(lambda s=sentinel: s.knows(1, 2), 30, 0.2, "sentinels in touch")

    @property
    def addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        # SIGKILL: a Redis that has just synced from a primary refuses SIGTERM while
        # it writes its first AOF ("Writing initial AOF, can't exit"), and this data
        # is thrown away anyway.
        self.primary.kill()
        self.replica.kill()


@pytest.fixture
def sentinel_redis(tmp_path) -> Iterator[SentinelRedis]:
    group = SentinelRedis(tmp_path)
    yield group
    group.stop()


def beat_runs_since(app, since) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.source == "beat", Run.created_at > since)
        )
        db.session.remove()
    return count


def finished_runs(app, ids: list[str]) -> list[Run] | None:
    with app.app_context():
        rows = db.session.scalars(select(Run).where(Run.id.in_(ids))).all()
        db.session.expunge_all()
        db.session.remove()
    if len(rows) == len(ids) and all(r.state in FINISHED_STATES for r in rows):
        return list(rows)
    return None


@pytest.mark.timeout(420)
def test_failover_under_load_loses_nothing(make_app, sentinel_redis, tmp_path):
    app = make_app(
        # With sentinels, REDIS_URL gives only the database (and password).
        REDIS_URL="redis://127.0.0.1/0",
        REDIS_SENTINELS=sentinel_redis.addresses,
        RUN_LEASE_SECONDS=3,
        REDISPATCH_SECONDS=5,
        DISPATCH_GRACE_SECONDS=1,
        MAX_ATTEMPTS=5,
        MAX_ACTIVE_RUNS=2000,
    )
    # Beat sends the schedules table: a fire every 3 s shows that it sends again.
    add_schedule(app, 3)
    env = app_environ(app)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    env["WEB_CONCURRENCY"] = "1"
    web = Web("web", env, tmp_path / "web.log")
    worker = Worker("w1", env, tmp_path / "worker.log")
    beat = Beat("beat", env, tmp_path / "beat.log")
    processes = {"web": web, "worker": worker, "beat": beat}
    token = app.test_client_class.default_token
    # Runs of half a second: some are in flight when the primary dies.
    stream = StartStream(web.url, token, {"rows": ROWS, "seconds": 0.5}, 0.2)
    try:
        wait_for(beat.holds_lock, 60, 0.2, "beat holding the lock")
        wait_for(lambda: len(stream.accepted()) >= 15, 60, 0.1, "starts before")

        sentinel_redis.primary.kill()
        killed = time.monotonic()
        promoted_port = sentinel_redis.replica.port
        wait_for(
            lambda: sentinel_redis.sentinels[0].primary_port() == promoted_port,
            60,
            0.1,
            "the replica promoted",
        )
        promoted, promoted_at = time.monotonic(), utcnow()
        # Starts are answered 202 again (they were, through the outbox, if the
        # database never went away) and go on for a while after the promotion.
        wait_for(
            lambda: len(stream.accepted(since=promoted)) >= 25,
            PROMOTION_BOUND_S,
            0.1,
            "starts answered 202 after the promotion",
        )
        again_s = min(t for t, s, _ in stream.answers if t >= promoted and s == 202)
        # beat (redis-sentinel://) follows the primary too and sends again.
        wait_for(
            lambda: beat_runs_since(app, promoted_at),
            PROMOTION_BOUND_S,
            0.5,
            "beat sending after the promotion",
        )
    finally:
        stream.stop()
    statuses = stream.statuses()
    # Nothing answered 5xx but 503, nor failed to answer.
    assert set(statuses) <= {202, 503}, statuses

    ids = stream.accepted()
    done = wait_for(
        lambda: finished_runs(app, ids), 60 + len(ids) * 0.5, 0.5, "every run finished"
    )
    assert {r.state for r in done} == {"SUCCESS"}, [
        (r.id, r.state, r.error) for r in done if r.state != "SUCCESS"
    ]
    # Exactly once: one SUCCESS line per run in the worker's log, and each run's rows
    # once in the data set of the new primary.
    log = worker.log()
    assert "Connected to sentinel://" in log
    ended = re.findall(r"run (\S+) task=generate_data source=api state=SUCCESS", log)
    assert sorted(ended) == sorted(ids)
    with app.app_context():
        store = get_store()
        assert all(store.run_span(r.id)[1] == ROWS for r in done)
        successes = db.session.scalars(select(Run).where(Run.state == "SUCCESS"))
        assert store.total() == sum(r.result["rows"] for r in successes)
        db.session.remove()
        # The data set is on the promoted server.
        promoted_total = RedisServer(tmp_path, promoted_port).client().dbsize()
        assert promoted_total > 0
    alive = {name: p.alive() for name, p in processes.items()}
    assert all(alive.values()), alive
    print(
        f"failover: {len(ids)} runs accepted, {statuses}; promoted "
        f"{promoted - killed:.1f} s after the kill; 202 again "
        f"{max(0.0, again_s - promoted):.1f} s after the promotion"
    )
    for process in processes.values():
        process.stop()


def test_a_commit_the_replica_did_not_confirm_is_not_done(tmp_path):
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica").start()
    try:
        replica.replicate(primary)
        store = DataStore.from_url(primary.url, "myapp:data")
        assert store.commit_run("confirmed", [(1.0, "alpha")] * 5).appended
        # A replica that stops answering (SIGSTOP: its connection stays up, so the
        # primary still counts it) cannot confirm the next commit.
        replica.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ReplicationUnconfirmed):
            store.commit_run("unconfirmed", [(2.0, "beta")] * 7)
        assert time.monotonic() - started < 10
        replica.process.send_signal(signal.SIGCONT)
        # The run's retry commits it again: its rows are there once, and the
        # replica has them.
        store.commit_run("unconfirmed", [(2.0, "beta")] * 7)
        assert store.run_span("unconfirmed")[1] == 7
        assert store.total() == 12
        on_replica = DataStore.from_url(replica.url, "myapp:data")
        assert on_replica.total() == 12
    finally:
        # SIGKILL, not SIGTERM: see SentinelRedis.stop.
        replica.kill()
        primary.kill()
