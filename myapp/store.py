"""The generated data set in Redis: O(1) appends, exactly once per run, fast pages.

Layout (every key is built here, under one prefix):

- `seq`                  last row id; ids are dense 1..n, so `seq` is also the total
- `rows`                 hash id -> row JSON
- `by_value`             sorted set of ids scored by value (sort by value)
- `cat:<c>:ids`          list of ids in one category, oldest first
- `cat:<c>:by_value`     sorted set of one category's ids by value
- `runs`                 hash run_id -> "first_id,count" (a run's rows are contiguous)
- `stats`                hash of running count/sum, overall and per category
- `version`              change counter: bumped once per committed run
- `cancelled:<run_id>`   a cancelled run: its commit is refused (expires after a day)

Rows get their id and `created_at` when a run commits, in one Lua script, so
created-order is id order and paging by creation needs no index at all.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis

CATEGORIES: tuple[str, ...] = ("alpha", "beta", "gamma", "delta")
SORT_FIELDS = ("created_at", "value")

# Atomic, idempotent append. A second commit for the same run (a redelivered or
# retried message) finds the run in `runs` and changes nothing.
_COMMIT = """
local p = ARGV[1]
local run_id = ARGV[2]
local created = ARGV[3]
local n = tonumber(ARGV[4])
local seen = redis.call('HGET', p .. ':runs', run_id)
if seen then return {0, seen} end
if redis.call('EXISTS', p .. ':cancelled:' .. run_id) == 1 then return {-1, '0,0'} end
if n == 0 then
  redis.call('HSET', p .. ':runs', run_id, '0,0')
  return {1, '0,0'}
end
local last = redis.call('INCRBY', p .. ':seq', n)
local first = last - n + 1
for i = 1, n do
  local value = tonumber(ARGV[3 + 2 * i])
  local cat = ARGV[4 + 2 * i]
  local id = first + i - 1
  redis.call('HSET', p .. ':rows', id, cjson.encode({
    id = id, run_id = run_id, created_at = created, value = value, category = cat}))
  redis.call('ZADD', p .. ':by_value', value, id)
  redis.call('ZADD', p .. ':cat:' .. cat .. ':by_value', value, id)
  redis.call('RPUSH', p .. ':cat:' .. cat .. ':ids', id)
  redis.call('HINCRBY', p .. ':stats', 'count:' .. cat, 1)
  redis.call('HINCRBYFLOAT', p .. ':stats', 'sum:' .. cat, value)
end
local span = first .. ',' .. n
redis.call('HSET', p .. ':runs', run_id, span)
redis.call('INCR', p .. ':version')
return {1, span}
"""


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class CommitResult:
    appended: bool  # False when this run had already committed (duplicate delivery)
    first_id: int
    count: int
    cancelled: bool = False  # refused: the run was cancelled before its commit


class DataStore:
    """The data set, on one Redis connection pool, under one key prefix."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix
        self._commit = client.register_script(_COMMIT)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- writing ---------------------------------------------------------------

    @staticmethod
    def random_rows(
        count: int, rng: random.Random | None = None
    ) -> list[tuple[float, str]]:
        """`count` random (value, category) pairs."""
        rng = rng or random.Random()
        return [
            (round(rng.uniform(0, 1000), 3), rng.choice(CATEGORIES))
            for _ in range(count)
        ]

    def commit_run(
        self, run_id: str, rows: Sequence[tuple[float, str]]
    ) -> CommitResult:
        """Append a run's rows atomically; a second call for the same run is a no-op,
        and a cancelled run's call is refused (`cancelled`)."""
        created = (
            datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        args: list[Any] = [self.prefix, run_id, created, len(rows)]
        for value, category in rows:
            args.extend((repr(float(value)), category))
        status, span = self._commit(args=args)
        first, count = (int(x) for x in str(span).split(","))
        return CommitResult(status == 1, first, count, cancelled=status == -1)

    def cancel_run(self, run_id: str) -> None:
        """Refuse any later commit of this run: the check and the append are one
        atomic script, so a cancel can never race a commit into the data set."""
        self.redis.set(self._key("cancelled", run_id), 1, ex=86_400)

    # -- reading ---------------------------------------------------------------

    def version(self) -> int:
        """Change counter: a page compares it to decide whether to refetch rows."""
        return int(self.redis.get(self._key("version")) or 0)

    def total(self) -> int:
        return int(self.redis.get(self._key("seq")) or 0)

    def run_span(self, run_id: str) -> tuple[int, int] | None:
        span = self.redis.hget(self._key("runs"), run_id)
        if span is None:
            return None
        first, count = (int(x) for x in str(span).split(","))
        return first, count

    def page(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        sort: Literal["created_at", "value"] = "created_at",
        order: Literal["asc", "desc"] = "desc",
        run_id: str | None = None,
        category: str | None = None,
    ) -> Page:
        """One page of rows; every path costs O(log n + limit) in the data set size.

        Filtering by run reads that run's rows (at most MAX_ROWS_PER_RUN), which is
        bounded by the run, not by the data set.
        """
        desc = order == "desc"
        if run_id is not None:
            return self._run_page(run_id, offset, limit, sort, desc, category)
        if category is not None:
            if sort == "value":
                key = self._key("cat", category, "by_value")
                total = int(self.redis.zcard(key))
                ids = self._zpage(key, offset, limit, desc)
            else:
                key = self._key("cat", category, "ids")
                total = int(self.redis.llen(key))
                ids = self._lpage(key, offset, limit, desc)
            return Page(total, self._rows(ids))
        total = self.total()
        if sort == "value":
            ids = self._zpage(self._key("by_value"), offset, limit, desc)
        else:
            ids = _id_range(1, total, offset, limit, desc)
        return Page(total, self._rows(ids))

    def _zpage(self, key: str, offset: int, limit: int, desc: bool) -> list[int]:
        if limit <= 0:
            return []
        return [
            int(i)
            for i in self.redis.zrange(key, offset, offset + limit - 1, desc=desc)
        ]

    def _lpage(self, key: str, offset: int, limit: int, desc: bool) -> list[int]:
        if limit <= 0:
            return []
        if desc:
            ids = self.redis.lrange(key, -(offset + limit), -(offset + 1))
            return [int(i) for i in reversed(ids)]
        return [int(i) for i in self.redis.lrange(key, offset, offset + limit - 1)]

    def _run_page(
        self,
        run_id: str,
        offset: int,
        limit: int,
        sort: str,
        desc: bool,
        category: str | None,
    ) -> Page:
        span = self.run_span(run_id)
        if span is None or span[1] == 0:
            return Page(0, [])
        first, count = span
        if sort == "created_at" and category is None:
            ids = _id_range(first, count, offset, limit, desc)
            return Page(count, self._rows(ids))
        rows = self._rows(list(range(first, first + count)))
        if category is not None:
            rows = [r for r in rows if r["category"] == category]
        key = (
            (lambda r: (r["value"], r["id"]))
            if sort == "value"
            else (lambda r: r["id"])
        )
        rows.sort(key=key, reverse=desc)
        return Page(len(rows), rows[offset : offset + limit])

    def _rows(self, ids: list[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        return [
            json.loads(raw) for raw in self.redis.hmget(self._key("rows"), ids) if raw
        ]

    def summary(self, category: str | None = None) -> dict[str, Any]:
        """Count, mean, min, max and per-category counts, from running aggregates."""
        stats = self.redis.hgetall(self._key("stats"))
        categories = (category,) if category else CATEGORIES
        counts = {c: int(stats.get(f"count:{c}", 0)) for c in categories}
        count = sum(counts.values())
        total = sum(float(stats.get(f"sum:{c}", 0)) for c in categories)
        key = (
            self._key("cat", category, "by_value")
            if category
            else self._key("by_value")
        )
        low = self.redis.zrange(key, 0, 0, withscores=True)
        high = self.redis.zrange(key, -1, -1, withscores=True)
        return {
            "count": count,
            "mean": round(total / count, 6) if count else None,
            "min": low[0][1] if low else None,
            "max": high[0][1] if high else None,
            "per_category": counts,
        }


def _id_range(first: int, count: int, offset: int, limit: int, desc: bool) -> list[int]:
    """Ids of a page over the contiguous ids first..first+count-1."""
    if offset >= count or limit <= 0:
        return []
    stop = min(count, offset + limit)
    if desc:
        last = first + count - 1
        return list(range(last - offset, last - stop, -1))
    return list(range(first + offset, first + stop))
