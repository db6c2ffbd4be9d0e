"""Writing the data set: a run's rows staged in chunks, published in one step,
then moved into the value indexes in batches (the steps are described in the
package docstring), and the fence and cancel flags that refuse a commit."""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from myapp.store import segment
from myapp.store.base import ENTRY, INDEX_BATCH, MEMBER, StoreBase
from myapp.store.segment import CATEGORIES, pack

# A staged run that is neither published nor retried within this time is gone.
STAGE_TTL_SECONDS = 3600
# Staging writes this much per command: a fraction of a millisecond of Redis.
STAGE_CHUNK_BYTES = 256 * 1024
# How long a commit waits for the primary's replicas to confirm it (WAIT).
REPLICA_WAIT_MS = 2000
# How long a cancel flag refuses a late commit.
CANCEL_TTL_SECONDS = 86_400


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


class Commits(StoreBase):
    """Appending runs' rows, indexing them, fencing and cancelling runs."""

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
                segment.offset_by_value(sum(counts), counts, c) + done[c] * ENTRY.size
            )
            stop = start + take * ENTRY.size
            raw = (
                data[start:stop]
                if data
                else self.redis.getrange(self.key("seg", str(number)), start, stop - 1)
            )
            pairs: list[bytes | str] = []
            for value, row in ENTRY.iter_unpack(raw):
                pairs += (repr(value), MEMBER.pack(value, number, row))
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
