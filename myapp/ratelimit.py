"""Fixed-window rate limits counted in Redis, so every web process shares the count.

START_RATE_LIMIT (admission) and LOGIN_RATE_LIMIT (sign-in) both use `RateLimit`.
While Redis is away a count falls back to this process's memory: a limit never
turns an outage of its storage into refusals (nor into no limit at all).
"""

from __future__ import annotations

import logging
import time

import redis
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from myapp.redis_clients import RedisTarget

log = logging.getLogger(__name__)

KEY_PREFIX = "myapp:limits"


class RateLimitExceeded(Exception):
    """Too many hits of one key in the current window."""

    def __init__(self, limit: str, retry_after: int):
        super().__init__(f"limit {limit} reached; retry after {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


class RateLimit:
    """`rate` (e.g. "60/minute", or "off") per key, within `scope` (a namespace in
    the key, so two limits never share a count)."""

    def __init__(self, rate: str, target: RedisTarget, scope: str):
        self.rate = rate
        self.scope = scope
        self.item: RateLimitItem | None = (
            None if rate.strip().lower() in ("off", "") else parse(rate)
        )
        # A dead Redis must cost a request milliseconds, not a hung request.
        client = target.client(socket_connect_timeout=1, socket_timeout=1)
        self._shared = FixedWindowRateLimiter(
            # limits uses the pool (the sentinels' primary, or the URL's server); its
            # own URL parsing is not used.
            RedisStorage(
                "redis://",
                connection_pool=client.connection_pool,
                key_prefix=KEY_PREFIX,
            )
        )
        self._local = FixedWindowRateLimiter(MemoryStorage())

    def hit(self, *keys: str) -> None:
        """Count one hit of each key; raise RateLimitExceeded if any is over."""
        if self.item is None:
            return
        try:
            limiter = self._shared
            allowed = [limiter.hit(self.item, self.scope, key) for key in keys]
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit counted in memory: redis unreachable (%s)", exc)
            limiter = self._local
            allowed = [limiter.hit(self.item, self.scope, key) for key in keys]
        for key, ok in zip(keys, allowed, strict=True):
            if not ok:
                reset = limiter.get_window_stats(self.item, self.scope, key).reset_time
                raise RateLimitExceeded(self.rate, max(1, int(reset - time.time())))
