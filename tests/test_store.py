"""The Redis data set: exact appends and pages in every sort, order and filter, and
commits of any size that keep Redis answering everyone else."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

import pytest
from celery.beat import Scheduler

from myapp.store import CATEGORIES, DataStore
from tests.support import wait_for

BIGGEST = 100_000  # MAX_ROWS_PER_RUN's default


@pytest.fixture
def store(app):
    return app.extensions["store"]


@pytest.fixture
def seeded(store):
    """Three runs with known values: 'a' (ids 1-4), 'b' (ids 5-6), 'c' (ids 7-9)."""
    store.commit_run(
        "a", [(5.0, "alpha"), (1.0, "beta"), (9.0, "alpha"), (3.0, "gamma")]
    )
    store.commit_run("b", [(7.0, "beta"), (2.0, "alpha")])
    store.commit_run("c", [(8.0, "delta"), (4.0, "alpha"), (6.0, "beta")])
    return store


def values(page):
    return [row["value"] for row in page.rows]


def staging_keys(store) -> list[bytes]:
    return list(store.redis.scan_iter(match=store.key("stage") + "*"))


def test_rows_carry_the_contract_fields(seeded):
    row = seeded.page(order="asc", limit=1).rows[0]
    assert set(row) == {"id", "run_id", "created_at", "value", "category"}
    assert row["id"] == 1 and row["run_id"] == "a" and row["created_at"].endswith("Z")


def test_pages_by_creation_in_both_orders(seeded):
    assert values(seeded.page(order="asc", limit=3)) == [5, 1, 9]
    assert values(seeded.page(order="asc", offset=7, limit=5)) == [4, 6]
    assert values(seeded.page(order="desc", limit=2)) == [6, 4]
    assert values(seeded.page(order="desc", offset=8, limit=2)) == [5]
    assert seeded.page(offset=9).rows == [] and seeded.page().total == 9


def test_pages_by_value_in_both_orders(seeded):
    assert values(seeded.page(sort="value", order="asc", limit=4)) == [1, 2, 3, 4]
    assert values(seeded.page(sort="value", order="desc", offset=2, limit=3)) == [
        7,
        6,
        5,
    ]


def test_filters_by_category(seeded):
    page = seeded.page(category="alpha", order="asc")
    assert page.total == 4 and values(page) == [5, 9, 2, 4]
    assert values(seeded.page(category="alpha", order="desc", offset=1, limit=2)) == [
        2,
        9,
    ]
    assert values(seeded.page(category="beta", sort="value", order="desc")) == [7, 6, 1]


def test_filters_by_run(seeded):
    page = seeded.page(run_id="c", order="asc")
    assert page.total == 3 and values(page) == [8, 4, 6]
    assert values(seeded.page(run_id="a", sort="value", order="desc", limit=2)) == [
        9,
        5,
    ]
    assert values(seeded.page(run_id="a", category="alpha", sort="value")) == [9, 5]
    assert seeded.page(run_id="nope").total == 0


def test_change_counter_moves_once_per_committed_run(store):
    before = store.version()
    store.commit_run("x", [(1.0, "alpha")])
    assert store.version() == before + 1
    store.commit_run("x", [(2.0, "alpha")])  # the same run again: nothing changes
    assert store.version() == before + 1 and store.total() == 1


def test_concurrent_writers_lose_nothing(store):
    def write(n: int) -> None:
        for i in range(20):
            store.commit_run(f"w{n}-{i}", store.random_rows(25))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.total() == 4 * 20 * 25
    ids = [row["id"] for row in store.page(order="asc", limit=1000, offset=0).rows]
    assert ids == list(range(1, 1001))
    assert sum(store.summary()["per_category"].values()) == 2000
    assert set(store.summary()["per_category"]) == set(CATEGORIES)


def test_api_data_serves_pages(seeded, client):
    body = client.get("/api/data?sort=value&order=desc&limit=2&offset=1").get_json()
    assert body["total"] == 9 and [r["value"] for r in body["rows"]] == [8, 7]
    assert body["version"] == 3
    body = client.get("/api/data?run_id=b&sort=created_at&order=asc").get_json()
    assert [r["value"] for r in body["rows"]] == [7, 2]


def test_a_cancelled_run_cannot_commit(store):
    assert store.cancel_run("late")
    result = store.commit_run("late", [(1.0, "alpha"), (2.0, "beta")])
    assert result.cancelled and not result.appended
    assert store.total() == 0 and store.version() == 0
    # A run that committed before its cancel keeps its rows: the cancel is refused.
    store.commit_run("early", [(3.0, "gamma")])
    assert not store.cancel_run("early")
    again = store.commit_run("early", [(3.0, "gamma")])
    assert not again.cancelled and store.total() == 1


def test_rows_must_have_a_known_category_and_a_finite_value(store):
    with pytest.raises(ValueError, match="unknown category 'omega'"):
        store.commit_run("r", [(1.0, "omega")])
    with pytest.raises(ValueError, match="finite"):
        store.commit_run("r", [(float("nan"), "alpha")])
    assert store.total() == 0 and staging_keys(store) == []


# -- against a model -------------------------------------------------------------


class Model:
    """What the data set must show: the visible runs, oldest first."""

    def __init__(self):
        self.runs: list[tuple[str, list[tuple[float, str]]]] = []
        self.dropped = 0

    def page(self, offset, limit, sort, order, run_id=None, category=None):
        rows, next_id = [], self.dropped + 1
        for rid, run_rows in self.runs:
            for value, cat in run_rows:
                if run_id in (None, rid) and category in (None, cat):
                    rows.append((next_id, rid, value, cat))
                next_id += 1
        key = (lambda r: (r[2], r[0])) if sort == "value" else (lambda r: r[0])
        rows.sort(key=key, reverse=order == "desc")
        return len(rows), rows[offset : offset + limit]


def assert_matches(store, model, rng):
    assert store.total() == sum(len(rows) for _, rows in model.runs)
    some_runs = rng.sample(model.runs, min(2, len(model.runs)))
    for run_id in (None, *(rid for rid, _ in some_runs)):
        for category in (None, *CATEGORIES):
            for sort in ("created_at", "value"):
                for order in ("asc", "desc"):
                    n, _ = model.page(0, 0, sort, order, run_id, category)
                    for offset, limit in (
                        (0, 7),
                        (rng.randrange(n + 1), 13),
                        (n - 5, 9),
                    ):
                        offset = max(0, offset)
                        query = (offset, limit, sort, order, run_id, category)
                        total, want = model.page(*query)
                        page = store.page(
                            offset=offset,
                            limit=limit,
                            sort=sort,
                            order=order,
                            run_id=run_id,
                            category=category,
                        )
                        got = [
                            (r["id"], r["run_id"], r["value"], r["category"])
                            for r in page.rows
                        ]
                        assert (page.total, got) == (total, want), query


def test_pages_stay_exact_while_runs_are_indexed_and_dropped(store):
    """Every page, at every step: runs published but not yet in the value indexes,
    indexed a few rows at a time, then the oldest taken out and dropped."""
    rng = random.Random(7)
    model = Model()
    ties = [1.5, 2.0, 2.0, 7.25, -3.0, 1e-9]  # equal values: order falls to ids
    for i in range(12):
        rows = [
            (
                rng.choice(ties)
                if rng.random() < 0.5
                else round(rng.uniform(-9, 9), 3),
                rng.choice(CATEGORIES),
            )
            for _ in range(rng.choice([1, 5, 40, 250]))
        ]
        assert store.commit_run(f"run-{i}", rows, index=i % 3 != 0).appended
        model.runs.append((f"run-{i}", rows))
        assert_matches(store, model, rng)
        while i % 3 == 0 and store.index_pending(seconds=0, batch=17):
            assert_matches(store, model, rng)

    keep = sum(len(rows) for _, rows in model.runs[3:])
    while store.total() > keep:
        dropped = store.trim(keep, seconds=0, batch=19)
        while dropped > 0:  # whole runs, oldest first
            rows = model.runs.pop(0)[1]
            dropped -= len(rows)
            model.dropped += len(rows)
        assert dropped == 0
        assert_matches(store, model, rng)
    assert len(model.runs) == 9
    remaining = [v for _, rows in model.runs for v, _ in rows]
    summary = store.summary()
    assert summary["count"] == len(remaining)
    assert (summary["min"], summary["max"]) == (min(remaining), max(remaining))
    assert summary["mean"] == pytest.approx(sum(remaining) / len(remaining))


def test_indexers_running_at_once_index_every_row_once(store):
    """A worker finishing its run's indexing while the maintenance task does too."""
    rows = store.random_rows(3000, random.Random(9))
    store.commit_run("r", rows, index=False)
    indexers = [
        threading.Thread(target=store.index_pending, kwargs={"batch": 7})
        for _ in range(3)
    ]
    totals = set()
    for indexer in indexers:
        indexer.start()
    while any(indexer.is_alive() for indexer in indexers):
        # A row counted both in an index and in its segment would show here.
        totals.add(store.page(sort="value", limit=1).total)
    for indexer in indexers:
        indexer.join()
    assert totals <= {3000} and store.index_pending() == 0
    indexed = sum(
        store.redis.zcard(store.key("cat", c, "by_value")) for c in CATEGORIES
    )
    assert indexed == 3000
    page = store.page(sort="value", order="asc", offset=1000, limit=1000)
    assert [r["value"] for r in page.rows] == sorted(v for v, _ in rows)[1000:2000]


# -- the biggest run ---------------------------------------------------------------

# Pings Redis from another process (a thread would wait on this process's GIL while
# it packs rows): prints "ready", pings until stdin closes, prints the latencies.
PINGER = """
import json, sys, threading, time, redis
client = redis.Redis.from_url(sys.argv[1])
client.ping()
latencies, done = [], threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("ready", flush=True)
while not done.is_set():
    started = time.perf_counter()
    client.ping()
    latencies.append(time.perf_counter() - started)
    time.sleep(0.001)
print(json.dumps(latencies), flush=True)
"""


def test_other_clients_are_answered_while_the_biggest_run_commits(app, store):
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, app.config["DATA_REDIS_URL"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert pinger.stdout.readline().strip() == "ready"
        started = time.monotonic()
        result = store.commit_run("big", store.random_rows(BIGGEST))
        took = time.monotonic() - started
        pinger.stdin.close()
        latencies = json.loads(pinger.stdout.readline())
    finally:
        pinger.kill()
        pinger.wait()
    assert result.appended and store.total() == BIGGEST
    assert len(latencies) > 20, f"the other client pinged {len(latencies)} times"
    assert max(latencies) < 0.1, (
        f"another client waited {max(latencies) * 1000:.0f} ms during a {took:.1f} s "
        "commit"
    )
    slowest = max(
        (entry["duration"] for entry in store.redis.slowlog_get(128)), default=0
    )
    assert slowest < 100_000, f"one command held Redis {slowest / 1000:.0f} ms"


def test_a_reader_sees_none_or_all_of_a_committing_run(store):
    store.commit_run("before", store.random_rows(10))
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(store.total())
            # Value pages count the indexes plus the runs still being indexed.
            seen.add(store.page(sort="value", limit=5, offset=7).total)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        store.commit_run("big", store.random_rows(BIGGEST))
    finally:
        done.set()
        reader.join()
    assert seen <= {10, 10 + BIGGEST}, seen
    assert store.total() == 10 + BIGGEST


def test_a_cancel_during_a_commit_leaves_no_row_and_no_staging(store):
    staged: list[int] = []

    def cancel_midway(done: int, total: int) -> None:
        staged.append(done)
        if len(staged) == 2:
            assert store.cancel_run("big")  # not committed yet: the cancel wins

    result = store.commit_run("big", store.random_rows(BIGGEST), cancel_midway)
    assert result.cancelled and not result.appended
    assert len(staged) >= 2 and staged[-1] < BIGGEST  # stopped, not finished
    assert store.total() == 0 and store.version() == 0
    assert staging_keys(store) == []


# Commits a run from another process and hangs after its first staged chunk, to be
# killed there like a worker.
STAGER = """
import random, sys, time
from myapp.store import DataStore
store = DataStore.from_url(sys.argv[1], sys.argv[2])
def hang(done, total):
    print("staged", flush=True)
    time.sleep(120)
store.commit_run("big", DataStore.random_rows(int(sys.argv[3]), random.Random(5)), hang)
"""


def test_a_killed_commit_leaves_nothing_visible_and_its_retry_cleans_up(app, store):
    """SIGKILL mid-commit: the staging left behind expires, nothing is visible, and
    the run's next attempt deletes the staging and commits exactly once."""
    stager = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STAGER,
            app.config["DATA_REDIS_URL"],
            app.config["DATA_PREFIX"],
            str(BIGGEST),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stager.stdout.readline().strip() == "staged"
    finally:
        stager.kill()
        stager.wait()
    left = staging_keys(store)
    assert len(left) == 2 and all(0 < store.redis.ttl(name) <= 3600 for name in left)
    assert store.total() == 0 and store.page(sort="value").rows == []

    assert store.commit_run("big", DataStore.random_rows(BIGGEST, random.Random(5)))
    assert store.total() == BIGGEST and staging_keys(store) == []
    assert store.run_span("big") == (1, BIGGEST)


def test_a_page_within_the_biggest_run_reads_only_a_page(store):
    rows = store.random_rows(BIGGEST, random.Random(3))
    store.commit_run("big", rows)
    page = store.page(run_id="big", sort="value", order="desc", offset=50_000, limit=3)
    want = sorted(((v, i + 1) for i, (v, _) in enumerate(rows)), reverse=True)
    assert [(r["value"], r["id"]) for r in page.rows] == want[50_000:50_003]
    store.redis.config_resetstat()
    store.page(run_id="big", sort="value", order="desc", offset=50_000, limit=100)
    stats = store.redis.info("commandstats")
    # One script: a GETRANGE of the page's records and two small hash reads.
    assert stats["cmdstat_getrange"]["calls"] == 1
    assert set(stats) <= {
        "cmdstat_evalsha",
        "cmdstat_getrange",
        "cmdstat_hget",
        "cmdstat_hmget",
        "cmdstat_config",
        "cmdstat_info",
    }, set(stats)


# -- retention ------------------------------------------------------------------------


def test_the_maintenance_task_keeps_data_max_rows(app, store, worker):
    for i in range(6):
        store.commit_run(f"r{i}", store.random_rows(10))
    app.config["DATA_MAX_ROWS"] = 25
    scheduler = Scheduler(app=app.extensions["celery"], lazy=True)
    scheduler.setup_schedule()
    # What beat does when the entry is due.
    scheduler.apply_entry(scheduler.schedule["maintain-data"])
    wait_for(lambda: store.total() <= 25)
    # Whole runs go, oldest first: r0..r3 dropped, r4 and r5 kept.
    assert store.total() == 20
    assert store.run_span("r3") is None and store.run_span("r4") == (41, 10)
    assert [r["id"] for r in store.page(order="asc", limit=1).rows] == [41]
    assert store.summary()["count"] == 20


def test_data_max_rows_below_a_run_is_refused(make_app):
    with pytest.raises(RuntimeError, match="DATA_MAX_ROWS"):
        make_app(DATA_MAX_ROWS=10, MAX_ROWS_PER_RUN=100)


def test_every_key_shares_one_hash_tag(seeded):
    seeded.commit_run("d", seeded.random_rows(5))
    names = list(seeded.redis.scan_iter(match="*"))
    tag = b"{" + seeded.prefix.encode() + b"}:"
    assert names and all(name.startswith(tag) for name in names), names


def test_the_data_set_can_live_on_its_own_redis(make_app, redis_server):
    """DATA_REDIS_URL: the data set on another Redis (here another database)."""
    app = make_app(DATA_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/5")
    store: DataStore = app.extensions["store"]
    store.clear()
    store.commit_run("x", [(1.0, "alpha")])
    assert store.total() == 1 and store.redis.exists(store.key("seq"))
    assert not app.extensions["redis"].exists(store.key("seq"))
    assert app.test_client().get("/readyz").get_json()["checks"]["data_redis"] == "ok"
    store.clear()
