"""The Redis data set: exact appends, correct pages in every sort, order and filter."""

from __future__ import annotations

import threading

import pytest

from myapp.store import CATEGORIES


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
    store.cancel_run("late")
    result = store.commit_run("late", [(1.0, "alpha"), (2.0, "beta")])
    assert result.cancelled and not result.appended
    assert store.total() == 0 and store.version() == 0
    # A run that committed before its cancel keeps its rows (and stays committed).
    store.commit_run("early", [(3.0, "gamma")])
    store.cancel_run("early")
    again = store.commit_run("early", [(3.0, "gamma")])
    assert not again.cancelled and store.total() == 1
