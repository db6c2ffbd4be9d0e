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

`DataStore` is built from its parts: `commit.py` (stage, publish, index; fence and
cancel), `retention.py` (trim), `reading.py` (pages and aggregates), on `base.py`
(the client, key names and script calls); `segment.py` packs rows, `scripts.py`
holds the Lua.
"""

from __future__ import annotations

import redis

from myapp.redis_clients import RedisTarget
from myapp.store import scripts
from myapp.store.commit import (
    AttemptSuperseded,
    CommitResult,
    Commits,
    ReplicationUnconfirmed,
    StageHook,
    StagingLost,
)
from myapp.store.reading import SORT_FIELDS, Page, Reading
from myapp.store.retention import Retention
from myapp.store.segment import CATEGORIES, Category

__all__ = [
    "CATEGORIES",
    "SORT_FIELDS",
    "AttemptSuperseded",
    "Category",
    "CommitResult",
    "DataStore",
    "Page",
    "ReplicationUnconfirmed",
    "StageHook",
    "StagingLost",
]


class DataStore(Commits, Retention, Reading):
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
        return cls(target.fail_fast_client(), prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> DataStore:
        """A store with its own connection pool to the Redis at `url`."""
        return cls.from_target(RedisTarget(url), prefix)
