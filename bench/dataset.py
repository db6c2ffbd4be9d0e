"""The large data sets of the append and grid measurements, in their own Redis db.

They live under the app's own prefix in DATA_DB, so a gunicorn started on that db
(`stack.web("ours", db=DATA_DB)`) serves exactly these rows at /api/data.
"""

from __future__ import annotations

import http.client
import random
import time
import uuid

from bench.stack import DATA_DB, Stack
from myapp.store import DataStore

PREFIX = "myapp:data"
BATCH = 20_000  # rows per fill commit: 50 commits make a million


def store(stack: Stack, prefix: str = PREFIX, db: int = DATA_DB) -> DataStore:
    return DataStore.from_url(stack.redis_url(db), prefix)


def fill(stack: Stack, rows: int, db: int = DATA_DB) -> DataStore:
    """Make the data set in `db` hold `rows` rows (give or take what appends added
    since), in batches of distinct runs, starting over if it holds far more."""
    target = store(stack, db=db)
    total = target.total()
    if total > rows * 1.2:
        target.redis.flushdb()
        total = 0
    rng = random.Random(rows)
    while total < rows:
        batch = min(BATCH, rows - total)
        target.commit_run(f"fill-{uuid.uuid4()}", DataStore.random_rows(batch, rng))
        total += batch
    return target


def memory_per_row(target: DataStore) -> float:
    """Bytes of Redis memory per row of a data set: every key's exact MEMORY USAGE
    (all elements sampled) over its rows."""
    used = sum(
        target.redis.memory_usage(name, samples=0) or 0
        for name in target.redis.scan_iter(match=target.key("*"), count=1000)
    )
    return used / max(1, target.total())


def time_page(
    target: DataStore,
    conn: http.client.HTTPConnection,
    auth: dict[str, str],
    offset: int,
    run_id: str | None = None,
) -> tuple[float, float]:
    """Milliseconds of one 100-row page by value, descending, at `offset` of the data
    set (or within run `run_id`): by the store call, then by GET /api/data on `conn`,
    a connection to a gunicorn serving the same data set. Fails on a short page or
    an answer other than 200, so a broken setup never passes as fast."""
    started = time.perf_counter()
    page = target.page(
        offset=offset, limit=100, sort="value", order="desc", run_id=run_id
    )
    store_elapsed = time.perf_counter() - started
    where = f"in run {run_id} " if run_id is not None else ""
    if len(page.rows) != 100:
        raise RuntimeError(f"page at {offset} {where}has {len(page.rows)} rows")
    path = f"/api/data?offset={offset}&limit=100&sort=value&order=desc"
    if run_id is not None:
        path += f"&run_id={run_id}"
    started = time.perf_counter()
    conn.request("GET", path, headers=auth)
    response = conn.getresponse()
    response.read()
    http_elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"GET /api/data answered {response.status}")
    return store_elapsed * 1000, http_elapsed * 1000
