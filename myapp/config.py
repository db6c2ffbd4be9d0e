"""Configuration, read when the factory runs: defaults, then environment, then tests."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Variables the app reads from the environment, with the type to parse them as.
# `.env.example` lists the same names with their defaults.
_ENV_INT = (
    "MAX_ROWS_PER_RUN",
    "MAX_ACTIVE_RUNS",
    "SCHEDULE_SECONDS",
    "PRUNE_AFTER_DAYS",
    "RUN_LEASE_SECONDS",
    "MAX_CONTENT_LENGTH",
    "DISPATCH_GRACE_SECONDS",
    "MAX_ACTIVE_RUNS_PER_TASK",
    "MAX_ATTEMPTS",
    "REDISPATCH_SECONDS",
    "REAPER_SLACK_SECONDS",
    "DATA_MAX_ROWS",
)
_ENV_STR = (
    "REDIS_URL",
    "START_RATE_LIMIT",
    "APP_ENV",
    "DATA_PREFIX",
    "SECRET_KEY",
    "DATA_REDIS_URL",
)


def default_config(instance_path: str) -> dict[str, Any]:
    """Fresh defaults for one app: a new dict each call, so apps never share state."""
    return {
        "APP_ENV": "development",
        "SECRET_KEY": None,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SQLALCHEMY_DATABASE_URI": "sqlite:///"
        + str(Path(instance_path) / "myapp.sqlite"),
        "MAX_ROWS_PER_RUN": 100_000,
        "MAX_ACTIVE_RUNS": 100,
        # One task cannot take every slot: the others stay startable (OWASP API4).
        # Unset: four fifths of MAX_ACTIVE_RUNS (set in finalize).
        "MAX_ACTIVE_RUNS_PER_TASK": None,
        "START_RATE_LIMIT": "60/minute",
        "SCHEDULE_SECONDS": 90,
        "PRUNE_AFTER_DAYS": 30,
        # A STARTED run whose heartbeat is older than this may be claimed again by a
        # redelivered message: its worker is presumed gone.
        "RUN_LEASE_SECONDS": 30,
        # PENDING runs younger than this are left to the message already sent.
        "DISPATCH_GRACE_SECONDS": 10,
        # The reaper (myapp.reliability): a run whose worker is gone is sent again
        # until it has been claimed MAX_ATTEMPTS times, then ends FAILURE.
        "MAX_ATTEMPTS": 3,
        # A dispatched run still PENDING (or RETRY) after this long whose message is
        # not in the queue was reserved by a worker that died: send it again.
        "REDISPATCH_SECONDS": 120,
        # Grace past Celery's hard time limit before a run still STARTED counts as
        # stuck (the pool killed it, or the pool cannot enforce limits).
        "REAPER_SLACK_SECONDS": 60,
        # Cookies: never readable from scripts, not sent on cross-site posts; Secure
        # outside development (set in finalize).
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": None,
        # Task parameters are a few small fields; anything bigger is a mistake or abuse.
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "DATA_PREFIX": "myapp:data",
        # The data set's own Redis; unset: REDIS_URL's (set in finalize).
        "DATA_REDIS_URL": None,
        # Retention: the maintenance task drops the oldest runs, whole, beyond this
        # many rows (about 140 bytes of Redis each); 0 keeps everything.
        "DATA_MAX_ROWS": 2_000_000,
        "JSON_SORT_KEYS": False,
    }


def database_url(url: str) -> str:
    """Normalise DATABASE_URL: platforms hand out `postgres://`, we ship psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings present in the environment, parsed."""
    found: dict[str, Any] = {}
    for name in _ENV_STR:
        if environ.get(name):
            found[name] = environ[name]
    for name in _ENV_INT:
        if environ.get(name):
            try:
                found[name] = int(environ[name])
            except ValueError as exc:
                raise RuntimeError(
                    f"{name} must be an integer, got {environ[name]!r}"
                ) from exc
    if environ.get("DATABASE_URL"):
        found["SQLALCHEMY_DATABASE_URI"] = database_url(environ["DATABASE_URL"])
    return found


def engine_options(uri: str) -> dict[str, Any]:
    """Engine settings per backend: SQLite needs patience with concurrent writers."""
    if uri.startswith("sqlite"):
        # Web and worker write the same file; wait for the lock instead of failing.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}


def finalize(config: dict[str, Any]) -> None:
    """Check what must hold before the app starts; fill in derived settings."""
    if config["APP_ENV"] != "development" and not config.get("SECRET_KEY"):
        raise RuntimeError(
            "SECRET_KEY is required when APP_ENV is not 'development': "
            "set it to a long "
            "random string shared by every web process."
        )
    if not config.get("SECRET_KEY"):
        # Development only: a random key per start. `make run` sets one for all
        # processes so sessions and Dash's signed job handles agree between them.
        config["SECRET_KEY"] = secrets.token_hex(32)
    if config.get("MAX_ACTIVE_RUNS_PER_TASK") is None:
        # A fifth of the slots stay free for the other tasks.
        limit = config["MAX_ACTIVE_RUNS"]
        config["MAX_ACTIVE_RUNS_PER_TASK"] = max(1, limit - limit // 5)
    if not config.get("DATA_REDIS_URL"):
        config["DATA_REDIS_URL"] = config["REDIS_URL"]
    if 0 < config["DATA_MAX_ROWS"] < config["MAX_ROWS_PER_RUN"]:
        raise RuntimeError(
            f"DATA_MAX_ROWS ({config['DATA_MAX_ROWS']}) must be at least "
            f"MAX_ROWS_PER_RUN ({config['MAX_ROWS_PER_RUN']}), or 0 to keep every "
            "row: retention drops whole runs, so a smaller limit would drop the "
            "newest run too."
        )
    if config.get("SESSION_COOKIE_SECURE") is None:
        # Production is served over HTTPS; `make run` is plain http on localhost.
        config["SESSION_COOKIE_SECURE"] = config["APP_ENV"] != "development"
    config["SQLALCHEMY_DATABASE_URI"] = database_url(config["SQLALCHEMY_DATABASE_URI"])
    options = engine_options(config["SQLALCHEMY_DATABASE_URI"])
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **options,
        **config["SQLALCHEMY_ENGINE_OPTIONS"],
    }
