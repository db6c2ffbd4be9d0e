"""Retention: the oldest runs leave the data set whole, first out of the value
indexes in batches (still visible, served from their segments), then dropped in
one step."""

from __future__ import annotations

import time

from myapp.store import segment
from myapp.store.base import ENTRY, INDEX_BATCH, MEMBER, StoreBase
from myapp.store.segment import CATEGORIES


class Retention(StoreBase):
    """Dropping the oldest runs (`trim`), and clearing everything (`clear`)."""

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
                + (indexed[c] - take) * ENTRY.size
            )
            raw = self.redis.getrange(
                self.key("seg", str(number)), start, start + take * ENTRY.size - 1
            )
            members = [
                MEMBER.pack(value, number, row) for value, row in ENTRY.iter_unpack(raw)
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
