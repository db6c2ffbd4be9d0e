"""Grid page: one 100-row page sorted by value at a deep offset (90% in), at 1M rows
against the same at 1k rows; p95 of the store call itself (server time) and of the
whole HTTP GET /api/data under gunicorn. And the Redis memory the 1M rows take.

The two data sets live side by side (Redis dbs 2 and 3, one gunicorn on each) and
the samples alternate between them, so a noisy second hits both alike.
"""

from __future__ import annotations

import http.client

from bench.dataset import fill, memory_per_row, time_page
from bench.load import percentile
from bench.report import Result
from bench.stack import DATA_DB, SMALL_DATA_DB, Stack

NAME = "grid"
P95_LIMIT_MS = 20.0
BYTES_PER_ROW_LIMIT = 200
SIZES = {1_000: SMALL_DATA_DB, 1_000_000: DATA_DB}


def run(stack: Stack, quick: bool) -> list[Result]:
    samples = 150 if quick else 500
    warmup = 20 if quick else 50
    stores = {size: fill(stack, size, db) for size, db in SIZES.items()}
    store_ms: dict[int, list[float]] = {size: [] for size in SIZES}
    http_ms: dict[int, list[float]] = {size: [] for size in SIZES}
    with (
        stack.web("ours", db=SIZES[1_000]) as small_web,
        stack.web("ours", db=SIZES[1_000_000]) as big_web,
    ):
        conns = {
            1_000: http.client.HTTPConnection("127.0.0.1", small_web.port, timeout=10),
            1_000_000: http.client.HTTPConnection(
                "127.0.0.1", big_web.port, timeout=10
            ),
        }
        for i in range(warmup + samples):
            for size, target in stores.items():
                deep = int(target.total() * 0.9)
                store_time, http_time = time_page(target, conns[size], stack.auth, deep)
                if i >= warmup:
                    store_ms[size].append(store_time)
                    http_ms[size].append(http_time)
        for conn in conns.values():
            conn.close()
    big, small = 1_000_000, 1_000
    p95 = {
        kind: {size: percentile(values[size], 95) for size in SIZES}
        for kind, values in (("store", store_ms), ("http", http_ms))
    }
    med = {
        kind: {size: percentile(values[size], 50) for size in SIZES}
        for kind, values in (("store", store_ms), ("http", http_ms))
    }
    note = (
        f"p95 of {samples} requests per size after {warmup} warm-up, alternating "
        f"1k and 1M; offset 90% deep (900 and 900,000), sort=value order=desc; "
        f"medians: store {med['store'][small]:.2f} / {med['store'][big]:.2f} ms, "
        f"HTTP {med['http'][small]:.2f} / {med['http'][big]:.2f} ms (1k / 1M)."
    )
    limit = f"p95 ≤ {P95_LIMIT_MS:g} ms"
    per_row = memory_per_row(stores[big])
    return [
        Result(
            "grid page p95, store call: 1M vs 1k rows",
            p95["store"][big],
            p95["store"][small],
            "ms",
            "<=",
            1.5,
            note,
            also=(limit, p95["store"][big] <= P95_LIMIT_MS),
        ),
        Result(
            "grid page p95, HTTP GET /api/data: 1M vs 1k rows",
            p95["http"][big],
            p95["http"][small],
            "ms",
            "<=",
            1.5,
            "the same pages through gunicorn, one keep-alive connection per size.",
            also=(limit, p95["http"][big] <= P95_LIMIT_MS),
        ),
        Result(
            "Redis memory per row at 1M rows",
            per_row,
            None,
            "B",
            note=f"MEMORY USAGE (every element) of every key of the data set over its "
            f"{stores[big].total():,} rows: one sorted-set entry and 38 segment bytes "
            "a row, plus each run's few keys. The sorted sets' hash tables double at "
            "powers of two (each category crosses 2^18 near 1,048,576 rows): about "
            "140 bytes just below, 157 just above. The previous layout (a JSON hash "
            "entry and two sorted-set entries a row) took about 380.",
            also=(
                f"≤ {BYTES_PER_ROW_LIMIT} B",
                per_row <= BYTES_PER_ROW_LIMIT,
            ),
        ),
    ]
