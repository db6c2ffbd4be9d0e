"""The generated data set in Redis: runs committed in bounded steps, compact rows,
pages that cost a page.

Redis is shared with the broker, the results and Dash, so no command or script here
holds it for long, whatever the size of a run. A run's rows go through three steps:

1. **Stage** (worker): the rows are packed into one binary string, the run's
   *segment* (`segment.py`: 38 bytes a row, laid out for reading), and written into a
   staging key, preallocated to its exact size, in chunks of `STAGE_CHUNK_BYTES`. The
   staging key and its pointer expire after `STAGE_TTL_SECONDS`, and the next attempt
   of the same run deletes them: a worker killed here leaves nothing behind for long.
2. **Publish** (one script, O(1) in the run's size): checks that the run has not
   committed (a redelivered or retried run appends once) and was not cancelled,
   assigns its ids, RENAMEs the staging key to the segment, and records the run.
   Readers see all of its rows from this instant, or none before it.
3. **Index** (scripts of `INDEX_BATCH` rows each): the run's rows enter the value
   indexes, in value order; the client packs each batch's ZADD arguments from the
   segment and the script checks where indexing stands and writes. Until a row is
   indexed, readers find it in the segment (section B of its category: the
   not-yet-indexed rows are a sorted tail), so a page is exact at every step. A worker
   killed here leaves a visible, exact run that the run's next attempt, or
   `index_pending` (the maintenance task), finishes indexing.

Retention (`trim`, from the maintenance task) walks the same steps backwards for
the oldest run: out of the indexes in batches (still visible, served from its
segment), then dropped in one O(1) script, all its rows at once.

Keys, all under one hash tag (`{<prefix>}:`) so the data set can live on Redis
Cluster; `seg:<n>` names a run's segment by its number, assigned at publish:

- `seq`                  last row id given; ids are dense, a run's ids contiguous
- `trimmed`              rows dropped by retention (visible ids: trimmed+1 .. seq)
- `nseg`                 last segment number given
- `version`              change counter: bumped when a run appears or is dropped
- `stats`                hash: `count:<c>`, `sum:<c>` (visible rows per category),
                         `gone:<c>` (category-c rows dropped by retention)
- `runs`                 hash run_id -> segment number ("0": a run of no rows)
- `segs`                 hash segment -> "first n created_at n_c… sum_c… run_id"
- `seg:<n>`              the segment: a run's rows, packed (segment.py)
- `by_first`             sorted set of segments by first id (id -> run)
- `cat:<c>:by_cum`       sorted set of segments holding category c, scored by how
                         many category-c rows were committed before them
- `cat:<c>:by_value`     sorted set of a category's indexed rows by value; members
                         are (value, segment, row) big-endian (double, uint32,
                         uint32): ties in value sort by id, and a page needs no
                         scores
- `unindexed`            hash segment -> "+ j_c…" (being indexed) or "- j_c…"
                         (being removed): j_c of its category-c rows are indexed
- `stage:<run_id>`       token of the attempt staging this run (expires)
- `stage:<run_id>:<tok>` that attempt's staged segment (expires)
- `cancelled:<run_id>`   a cancelled run: its commit is refused (expires after a day)
- `fence:<run_id>`       the run's latest attempt (claimed, or staging): an older
                         attempt's staging and publish are refused (expires after a
                         day). Staging tokens are "<attempt>-<random>".

What it costs, in Redis: one sorted-set entry per row (~100 bytes with its share of
the hash table) plus its 38-byte segment record: 140 to 160 bytes a row, and a few
hundred bytes per run. A page sorted by creation reads its rows from segments (ids
are dense: O(log runs + page)); a page sorted by value is one ZRANGE with a category
filter, and otherwise a selection over the four category indexes (a value threshold
interpolated in a few probes, or O(log n) bisection steps, then a merge of the page);
a page within one run is one GETRANGE of the right section, whatever its sort or
filter. A commit costs the worker O(rows log rows) in Python (packing, sorting) and
Redis O(rows log n), spread over scripts of at most `INDEX_BATCH` rows.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from myapp.redis_clients import RedisTarget
from myapp.store import scripts, segment
from myapp.store.segment import CATEGORIES, CATEGORY_INDEX, Category, pack

# An index member: (value, segment, row), as the scripts pack it.
_MEMBER = struct.Struct(">dII")
# A record of a segment's section B: (value, row).
_ENTRY = segment.BY_VALUE_IN_CATEGORY

__all__ = [
    "CATEGORIES",
    "SORT_FIELDS",
    "AttemptSuperseded",
    "Category",
    "CommitResult",
    "DataStore",
    "Page",
]

SORT_FIELDS = ("created_at", "value")

# A staged run that is neither published nor retried within this time is gone.
STAGE_TTL_SECONDS = 3600
# Staging writes this much per command: a fraction of a millisecond of Redis.
STAGE_CHUNK_BYTES = 256 * 1024
# Rows moved into (or out of) the value indexes per script: a few milliseconds.
INDEX_BATCH = 500
# How long a commit waits for the primary's replicas to confirm it (WAIT).
REPLICA_WAIT_MS = 2000
# How long a cancel flag refuses a late commit.
CANCEL_TTL_SECONDS = 86_400


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


class ReplicationUnconfirmed(redis.TimeoutError):
    """A commit that not every replica of the primary confirmed in time: not done
    (a timeout, so runs retry it)."""


class StagingLost(RuntimeError):
    """A run's staged rows expired or were replaced by another attempt."""


class AttemptSuperseded(RuntimeError):
    """A later attempt at the run owns its commit: this one appends nothing."""

    def __init__(self, run_id: str, attempt: int | None):
        super().__init__(run_id, attempt)  # picklable: args are its parameters
        self.run_id = run_id
        self.attempt = attempt

    def __str__(self) -> str:
        return (
            f"attempt {self.attempt} of run {self.run_id} was taken over; its rows "
            "are refused"
        )


# Called between staging chunks with (rows staged, rows): a progress report, and
# the place where a cancel stops a long commit (by raising).
StageHook = Callable[[int, int], None]


class DataStore:
    """The data set, on one Redis connection pool, under one key prefix.

    The client must not decode replies (`decode_responses=False`): pages come back
    as raw segment bytes. `from_url` builds one.
    """

    def __init__(self, client: redis.Redis, prefix: str):
        self.redis = client
        self.prefix = prefix
        self._tag = "{" + prefix + "}:"
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in (
                "STAGE_BEGIN",
                "STAGE_WRITE",
                "STAGE_ABORT",
                "PUBLISH",
                "INDEX_STEP",
                "DEINDEX_STEP",
                "DROP",
                "CANCEL",
                "FENCE",
                "SPAN",
                "PAGE",
                "SUMMARY",
            )
        }

    @classmethod
    def from_target(cls, target: RedisTarget, prefix: str) -> DataStore:
        """A store with its own connection pool to `target` (myapp.redis_clients)."""
        client = target.client(
            # Fail fast when Redis is away: callers answer with a clear error
            # instead of hanging a web worker.
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
            retry_on_timeout=False,
        )
        return cls(client, prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> DataStore:
        """A store with its own connection pool to the Redis at `url`."""
        return cls.from_target(RedisTarget(url), prefix)

    def key(self, *parts: str) -> str:
        """The full name of one of the data set's keys (layout above)."""
        return self._tag + ":".join(parts)

    def _call(self, script: str, *args: Any) -> Any:
        return self._scripts[script](keys=[self.key("seq")], args=[self._tag, *args])

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
        self,
        run_id: str,
        rows: Sequence[tuple[float, str]],
        on_staged: StageHook | None = None,
        *,
        index: bool = True,
        attempt: int | None = None,
    ) -> CommitResult:
        """Append a run's rows: all visible at once, once per run id, never for a
        cancelled run (`cancelled`). A second call for a committed run changes
        nothing and returns its span. `on_staged` may raise to abandon the commit;
        what was staged is deleted. `index=False` leaves the value indexes to
        `index_pending`: pages are exact either way, value pages slower meanwhile.
        `attempt` (the worker's claim) fences it: raises AttemptSuperseded, having
        appended nothing, once a later attempt has claimed or staged the run."""
        packed = pack(rows)
        token = secrets.token_hex(8)
        if attempt is not None:
            token = f"{attempt}-{token}"
        begun = 0
        if packed.rows:
            begun = self._call(
                "STAGE_BEGIN", run_id, token, STAGE_TTL_SECONDS, len(packed.data)
            )
        if begun == -3:
            raise AttemptSuperseded(run_id, attempt)
        if begun == 1:
            self._stage(run_id, token, packed.data, packed.rows, on_staged)
        status, first, count, number = self._publish(
            run_id,
            token,
            packed.rows,
            len(packed.data),
            *packed.counts,
            *(repr(s) for s in packed.sums),
        )
        if status == -3:
            raise AttemptSuperseded(run_id, attempt)
        if status == -2:
            raise StagingLost(
                f"the staged rows of run {run_id} expired or were replaced before "
                "they were published"
            )
        if number and index:
            # Also after a duplicate: the first attempt may have died mid-index.
            self._index(number, data=packed.data if status == 1 else None)
        return CommitResult(status == 1, first, count, cancelled=status == -1)

    def _publish(self, *args: Any) -> Any:
        """PUBLISH, then (when the primary has replicas) WAIT until every one of them
        has it, on the same connection (WAIT counts that connection's writes).

        A commit the replicas did not confirm is not done: a failover now could
        promote a replica without it, and the run would be recorded SUCCESS with no
        rows. ReplicationUnconfirmed is transient, so the run is retried; PUBLISH is
        idempotent, so the retry appends nothing twice and waits again."""
        replicas = int(self.redis.info("replication").get("connected_slaves", 0))
        if not replicas:
            return self._call("PUBLISH", *args)
        pipe = self.redis.pipeline(transaction=False)
        self._scripts["PUBLISH"](
            keys=[self.key("seq")], args=[self._tag, *args], client=pipe
        )
        pipe.wait(replicas, REPLICA_WAIT_MS)
        published, confirmed = pipe.execute()
        if confirmed < replicas:
            raise ReplicationUnconfirmed(
                f"{confirmed} of {replicas} replicas confirmed the commit within "
                f"{REPLICA_WAIT_MS} ms"
            )
        return published

    def _stage(
        self,
        run_id: str,
        token: str,
        data: bytes,
        rows: int,
        on_staged: StageHook | None,
    ) -> None:
        """Write the segment in chunks; a refusal (cancelled) leaves the verdict to
        PUBLISH, any error or a raising hook deletes what was staged."""
        try:
            for start in range(0, len(data), STAGE_CHUNK_BYTES):
                chunk = data[start : start + STAGE_CHUNK_BYTES]
                written = self._call("STAGE_WRITE", run_id, token, start, chunk)
                if written == -1:
                    return  # cancelled: PUBLISH refuses and deletes the staging
                if written == -3:
                    return  # taken over: PUBLISH refuses too, and says so
                if written == 0:
                    raise StagingLost(
                        f"the staged rows of run {run_id} expired or were replaced"
                    )
                staged = start + len(chunk)
                if on_staged is not None and staged < len(data):
                    on_staged(staged * rows // len(data), rows)
        except BaseException:
            # Redis away: the staging key expires by itself.
            with contextlib.suppress(redis.RedisError):
                self._call("STAGE_ABORT", run_id, token)
            raise

    def _index(
        self,
        number: str | bytes | int,
        deadline: float | None = None,
        batch: int = INDEX_BATCH,
        data: bytes | None = None,
    ) -> int:
        """Move a published run's rows into the value indexes, `batch` rows per
        script, at least one batch; returns its rows still outside the indexes (some
        are left when `deadline` passes). `data` is its segment if at hand (else
        each batch is read from Redis)."""
        number = int(number)
        meta = self.redis.hget(self.key("segs"), number)
        done = self._indexed(number)
        if meta is None or done is None:
            return 0
        counts = [int(n) for n in meta.split(b" ")[3 : 3 + len(CATEGORIES)]]
        while True:
            c = next(
                i for i, (j, n) in enumerate(zip(done, counts, strict=True)) if j < n
            )
            take = min(batch, counts[c] - done[c])
            start = (
                segment.offset_by_value(sum(counts), counts, c) + done[c] * _ENTRY.size
            )
            stop = start + take * _ENTRY.size
            raw = (
                data[start:stop]
                if data
                else self.redis.getrange(self.key("seg", str(number)), start, stop - 1)
            )
            pairs: list[bytes | str] = []
            for value, row in _ENTRY.iter_unpack(raw):
                pairs += (repr(value), _MEMBER.pack(value, number, row))
            left = self._call("INDEX_STEP", number, c + 1, done[c], *pairs)
            if left == -1:  # another indexer moved on: start from where it stands
                done = self._indexed(number)
                if done is None:
                    return 0
                continue
            done[c] += take
            if left == 0 or (deadline is not None and time.monotonic() >= deadline):
                return left

    def _indexed(self, number: int) -> list[int] | None:
        """How many rows of each category of a run being indexed are in the
        indexes; None if it is not being indexed (done, or being dropped)."""
        state = self.redis.hget(self.key("unindexed"), number)
        if state is None or not state.startswith(b"+"):
            return None
        return [int(j) for j in state.split()[1:]]

    def fence_run(self, run_id: str, attempt: int) -> bool:
        """Record that `attempt` claimed the run: the commits of older attempts are
        refused from now on. False when a later attempt had already been recorded."""
        return bool(self._call("FENCE", run_id, attempt))

    def cancel_run(self, run_id: str) -> bool:
        """Refuse any later commit of this run; False if it has committed already.
        The flag and the commit are ordered inside Redis, so a cancel can never
        race a commit into the data set: exactly one of them wins."""
        return bool(self._call("CANCEL", run_id, CANCEL_TTL_SECONDS))

    # -- maintenance -------------------------------------------------------------

    def index_pending(self, seconds: float = 30, batch: int = INDEX_BATCH) -> int:
        """Finish indexing runs whose committing worker died mid-index (or that were
        committed with `index=False`), for about `seconds`, at least one batch per
        run; returns how many runs are still being indexed."""
        deadline = time.monotonic() + seconds
        left = 0
        for number, state in self.redis.hgetall(self.key("unindexed")).items():
            if state.startswith(b"+") and self._index(number, deadline, batch):
                left += 1
        return left

    def trim(self, max_rows: int, seconds: float = 30, batch: int = INDEX_BATCH) -> int:
        """Drop the oldest runs, whole, until at most `max_rows` rows remain or about
        `seconds` have passed (at least one batch is done); returns the rows dropped.
        A run leaves the value indexes in batches while it stays visible (pages read
        those rows from its segment), then disappears in one step."""
        deadline = time.monotonic() + seconds
        dropped = 0
        while self.total() > max_rows:
            oldest = self.redis.zrange(self.key("by_first"), 0, 0)
            if not oldest:
                break
            number = int(oldest[0])
            if self._leave_indexes(number, deadline, batch):
                break  # out of time: the next pass carries on from here
            meta = self.redis.hget(self.key("segs"), number)
            if self._call("DROP", number) and meta:
                dropped += int(meta.split(b" ", 2)[1])
            if time.monotonic() >= deadline:
                break
        return dropped

    def _leave_indexes(self, number: int, deadline: float, batch: int) -> int:
        """Take a run out of the value indexes, `batch` rows per script, at least
        one batch; returns its rows still indexed when `deadline` passed."""
        meta = self.redis.hget(self.key("segs"), number)
        if meta is None:
            return 0
        counts = [int(n) for n in meta.split(b" ")[3 : 3 + len(CATEGORIES)]]
        left = self._call("DEINDEX_STEP", number, 0, 0)  # indexing stops here
        indexed: list[int] | None = None
        while left != 0:
            if left == -1 or indexed is None:  # (again) from where removal stands
                state = self.redis.hget(self.key("unindexed"), number)
                if state is None:
                    return 0
                indexed = [int(j) for j in state.split()[1:]]
            c = next(i for i, j in enumerate(indexed) if j > 0)
            take = min(batch, indexed[c])
            start = (
                segment.offset_by_value(sum(counts), counts, c)
                + (indexed[c] - take) * _ENTRY.size
            )
            raw = self.redis.getrange(
                self.key("seg", str(number)), start, start + take * _ENTRY.size - 1
            )
            members = [
                _MEMBER.pack(value, number, row)
                for value, row in _ENTRY.iter_unpack(raw)
            ]
            left = self._call("DEINDEX_STEP", number, c + 1, indexed[c], *members)
            if left == -1:
                continue
            indexed[c] -= take
            if left and time.monotonic() >= deadline:
                return left
        return 0

    def clear(self) -> None:
        """Delete every key of the data set (tests and benchmarks; not atomic)."""
        batch = []
        for name in self.redis.scan_iter(match=self._tag + "*"):
            batch.append(name)
            if len(batch) >= 1000:
                self.redis.unlink(*batch)
                batch.clear()
        if batch:
            self.redis.unlink(*batch)

    # -- reading ---------------------------------------------------------------

    def version(self) -> int:
        """Change counter: a page compares it to decide whether to refetch rows."""
        return int(self.redis.get(self.key("version")) or 0)

    def total(self) -> int:
        last, trimmed = self.redis.mget(self.key("seq"), self.key("trimmed"))
        return int(last or 0) - int(trimmed or 0)

    def run_totals(self) -> Iterator[tuple[str, dict[str, tuple[int, float]]]]:
        """(created_at, {category: (rows, sum of values)}) of each committed run
        still in the data set, from its `segs` entry: one short HSCAN page at a time
        (a run's rows share its creation time), never the rows themselves."""
        n = len(CATEGORIES)
        for _, meta in self.redis.hscan_iter(self.key("segs"), count=500):
            fields = meta.decode().split(" ", 3 + 2 * n)
            counts, sums = fields[3 : 3 + n], fields[3 + n : 3 + 2 * n]
            yield (
                fields[2],
                {
                    c: (int(counts[i]), float(sums[i]))
                    for i, c in enumerate(CATEGORIES)
                    if int(counts[i])
                },
            )

    def run_span(self, run_id: str) -> tuple[int, int] | None:
        """(first id, rows) of a committed run; None if it has not committed."""
        span = self._call("SPAN", run_id)
        return None if span is None else (int(span[0]), int(span[1]))

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
        """One page of rows, read by one script: O(log n + limit) in the data set's
        size, O(limit) within a run, for every sort, order and filter."""
        total, runs, *pieces = self._call(
            "PAGE",
            offset,
            limit,
            sort,
            "1" if order == "desc" else "0",
            run_id or "",
            "" if category is None else CATEGORY_INDEX[category] + 1,
        )
        runs = json.loads(runs)
        made_by = {runs[i]: _run_of(runs[i + 1]) for i in range(0, len(runs), 2)}
        rows = []
        for seg, row, value, category_number in _decode(pieces):
            first, run, created = made_by[seg]
            rows.append(
                {
                    "id": first + row,
                    "run_id": run,
                    "created_at": created,
                    "value": value,
                    "category": CATEGORIES[category_number - 1],
                }
            )
        if order == "desc":
            rows.reverse()
        return Page(int(total), rows)

    def summary(self, category: str | None = None) -> dict[str, Any]:
        """Count, mean, min, max and per-category counts, from running aggregates
        and the ends of the value indexes."""
        answer = self._call(
            "SUMMARY", "" if category is None else CATEGORY_INDEX[category] + 1
        )
        n = len(CATEGORIES)
        categories = (category,) if category else CATEGORIES
        counts = {c: int(answer[CATEGORY_INDEX[c]]) for c in categories}
        total = sum(float(answer[n + CATEGORY_INDEX[c]]) for c in categories)
        count = sum(counts.values())
        low, high = answer[2 * n], answer[2 * n + 1]
        return {
            "count": count,
            "mean": round(total / count, 6) if count else None,
            "min": float(low) if low else None,
            "max": float(high) if high else None,
            "per_category": counts,
        }


def _run_of(meta: str) -> tuple[int, str, str]:
    """(first id, run id, created_at) from a run's `segs` entry: "first n created
    n_c… sum_c… run_id", the run id last since it may hold spaces."""
    fields = meta.split(" ", 3 + 2 * len(CATEGORIES))
    return int(fields[0]), fields[-1], fields[2]


def _decode(pieces: list[list[Any]]) -> Iterator[tuple[int, int, float, int]]:
    """(segment, row, value, category number from 1) of each row of PAGE's pieces,
    in order (the layouts are in segment.py and scripts.PAGE)."""
    for kind, *piece in pieces:
        if kind == b"A":
            seg, first, data = piece
            for i, (value, category) in enumerate(segment.ROW.iter_unpack(data)):
                yield seg, first + i, value, category + 1
        elif kind == b"D":
            seg, data = piece
            for value, row, category in segment.BY_VALUE.iter_unpack(data):
                yield seg, row, value, category + 1
        elif kind == b"B":
            seg, category, data = piece
            for value, row in segment.BY_VALUE_IN_CATEGORY.iter_unpack(data):
                yield seg, row, value, category
        elif kind == b"C":
            seg, category, rows, low, span = piece
            numbers = struct.unpack(f">{len(rows) // 4}I", rows)
            for i, row in enumerate(numbers):
                at = (row - low if low >= 0 else i) * segment.ROW.size
                yield seg, row, segment.ROW.unpack_from(span, at)[0], category
        elif kind == b"V":
            members, categories = piece
            for (value, seg, row), category in zip(
                _MEMBER.iter_unpack(members), categories, strict=True
            ):
                yield seg, row, value, category - ord("0")
        else:
            raise ValueError(f"unknown page piece {kind!r}")
