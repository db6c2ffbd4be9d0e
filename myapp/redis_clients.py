"""Every Redis client of every process, built from the settings here and nowhere else.

Without Sentinel, `REDIS_URL` names the Redis of the broker, the results (Dash's
background callbacks included), beat's schedule and lock, the rate limits and, unless
`DATA_REDIS_URL` names another, the data set.

With `REDIS_SENTINELS` (`host:port,host:port,…`), every one of those clients asks the
sentinels for the primary of `REDIS_SENTINEL_MASTER` and asks again when a
connection fails or the primary turns read-only (a failover): kombu's `sentinel://`
transport for the broker, Celery's `sentinel://` result backend, redbeat's
`redis-sentinel://`, and redis-py's `Sentinel.master_for` for the rest. `REDIS_URL`
then gives only the database number and the password (its host and port are not
used). The data set follows the same sentinels when `DATA_REDIS_URL` is unset; a
`DATA_REDIS_URL` of its own is a plain Redis URL, without Sentinel.

Sentinels themselves are reached without a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

# Asking a sentinel is quick or it is down: the next one is asked.
SENTINEL_SOCKET_TIMEOUT = 1.0
# Fail fast when Redis is away, so callers answer with a clear error instead of
# hanging a web worker: a connect gives up after this many seconds, and a read or
# write that gets no answer (a cut link) after this many. celeryconfig.py gives
# Celery's and redbeat's clients the same bounds.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class RedisTarget:
    """Where one Redis is: a URL, or (sentinels set) the URL's database and password
    on whichever server the sentinels name primary of `master`."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"

    @property
    def db(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path else 0

    @property
    def password(self) -> str | None:
        return urlsplit(self.url).password

    @property
    def username(self) -> str | None:
        return urlsplit(self.url).username or None

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client with its own connection pool; `options` are redis-py's
        (timeouts, decode_responses, …)."""
        if not self.sentinels:
            return redis.Redis.from_url(self.url, **options)
        auth = {"password": self.password, "username": self.username}
        sentinel = Sentinel(
            list(self.sentinels),
            sentinel_kwargs={
                "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
                "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
            },
            db=self.db,
            **{k: v for k, v in auth.items() if v is not None},
            **options,
        )
        return sentinel.master_for(self.master, redis_class=redis.Redis)

    def fail_fast_client(self, **options: Any) -> redis.Redis:
        """A client for the app's own calls (the app's Redis, the data set): it
        gives up within the timeouts above and checks an idle connection before
        using it again; `options` as `client`'s."""
        return self.client(
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=READ_TIMEOUT_SECONDS,
            health_check_interval=30,
            retry_on_timeout=False,
            **options,
        )

    def celery_url(self) -> str:
        """The URL of kombu's broker transport and Celery's result backend:
        `sentinel://…;sentinel://…` (each with the database and password) or the
        Redis URL."""
        if not self.sentinels:
            return self.url
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        return ";".join(
            f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels
        )


def parse_sentinels(value: str | None) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS as (host, port) pairs; RuntimeError names a malformed one."""
    found = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RuntimeError(
                f"REDIS_SENTINELS must be host:port,host:port,…; got {item!r}"
            )
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def redis_target(config: Mapping[str, Any]) -> RedisTarget:
    """The Redis of the broker, results, beat, limits, readiness and metrics."""
    return RedisTarget(
        config["REDIS_URL"],
        parse_sentinels(config.get("REDIS_SENTINELS")),
        config.get("REDIS_SENTINEL_MASTER") or "mymaster",
    )


def data_target(config: Mapping[str, Any]) -> RedisTarget:
    """The data set's Redis: REDIS_URL's (with its sentinels) unless DATA_REDIS_URL
    names another."""
    target = redis_target(config)
    url = config.get("DATA_REDIS_URL")
    if url and url != target.url:
        return RedisTarget(url)
    return target


def celery_config(config: Mapping[str, Any], static: Mapping[str, Any]) -> dict:
    """Celery's settings that say where Redis is, for the factory to add to
    celeryconfig's (`static`): broker, result backend and redbeat, each with the
    transport options Sentinel needs."""
    target = redis_target(config)
    settings: dict[str, Any] = {
        "broker_url": target.celery_url(),
        "result_backend": target.celery_url(),
        "redbeat_redis_url": target.url,
    }
    if not target.sentinels:
        return settings
    sentinel = {
        "master_name": target.master,
        "sentinel_kwargs": {
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
        },
    }
    settings.update(
        broker_transport_options={**static["broker_transport_options"], **sentinel},
        result_backend_transport_options={
            **static["result_backend_transport_options"],
            **sentinel,
        },
        redbeat_redis_url="redis-sentinel://",
        redbeat_redis_options={
            **static["redbeat_redis_options"],
            "sentinels": list(target.sentinels),
            "service_name": target.master,
            "db": target.db,
            "password": target.password,
            "sentinel_kwargs": sentinel["sentinel_kwargs"],
        },
        # A demoted primary answers writes with READONLY, a channel error: without
        # this the worker shuts down instead of reconnecting to the new primary.
        broker_channel_error_retry=True,
    )
    return settings
