"""The app's configuration, read when the factory runs: defaults, then the
environment, then the caller's mapping (tests), then what is derived and checked.

Every variable is declared in the settings table (`myapp.settings`); this module
turns it into one Flask app's config.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from myapp.settings import ENVIRONMENT_NAMES, SETTINGS, Setting, env_example

# The table's names are declared in myapp.settings; tests and helpers import them
# from here too.
__all__ = [
    "ENVIRONMENT_NAMES",
    "SETTINGS",
    "Setting",
    "allowed_hosts",
    "database_url",
    "default_config",
    "engine_options",
    "env_example",
    "finalize",
    "from_environ",
]


def default_config(instance_path: str) -> dict[str, Any]:
    """Fresh defaults for one app: a new dict each call, so apps never share state."""
    config: dict[str, Any] = {s.name: s.default for s in SETTINGS if s.app}
    config.update(
        {
            "SQLALCHEMY_DATABASE_URI": "sqlite:///"
            + str(Path(instance_path) / "myapp.sqlite"),
            # Cookies: never readable from scripts, not sent on cross-site posts;
            # Secure outside development (set in finalize).
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": None,
            # A CSRF token is valid as long as its session: Dash pages and forms stay
            # open for hours, and the session (not the clock) is what it binds to.
            "WTF_CSRF_TIME_LIMIT": None,
            "JSON_SORT_KEYS": False,
            # The file REDIS_URL was read from (myapp.localstack), for messages.
            "REDIS_URL_FROM": None,
        }
    )
    return config


def database_url(url: str) -> str:
    """Normalise DATABASE_URL: platforms hand out `postgres://`, we ship psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The app's settings present (non-empty) in the environment, parsed.

    Every declared variable is parsed and range-checked, the processes' ones too,
    so `WEB_CONCURRENCY=0` stops the app with a message as `MAX_ACTIVE_RUNS=0` does.
    """
    found: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name)
        if raw:
            value = setting.parse(raw)
            if setting.app:
                found[setting.name] = value
    if environ.get("DATABASE_URL"):
        found["SQLALCHEMY_DATABASE_URI"] = database_url(environ["DATABASE_URL"])
    return found


def allowed_hosts(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """ALLOWED_HOSTS as a list: from the environment's comma-separated text, or
    as given (tests)."""
    if not value:
        return []
    names = value.split(",") if isinstance(value, str) else value
    return [name.strip() for name in names if name.strip()]


def engine_options(uri: str, idle_transaction_seconds: int = 60) -> dict[str, Any]:
    """Engine settings per backend: SQLite needs patience with concurrent writers;
    PostgreSQL must not keep a silent peer's session (and its locks) for hours."""
    if uri.startswith("sqlite"):
        # Web and worker write the same file; wait for the lock instead of failing.
        return {"connect_args": {"timeout": 30}}
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}
    if uri.startswith("postgresql"):
        options["connect_args"] = {
            # The server ends a session left inside a transaction (its host cut
            # off mid-transaction), so the run rows it locked can be taken over.
            "options": "-c idle_in_transaction_session_timeout="
            f"{idle_transaction_seconds * 1000}",
            # A peer that vanished is noticed in about a minute, by both sides,
            # not after the kernel's two-hour keepalive default (idle sockets) or
            # fifteen minutes of retransmissions (a write in flight).
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        }
    return options


def finalize(config: dict[str, Any]) -> None:
    """Check what must hold before the app starts; fill in derived settings."""
    # Values given by the caller (tests, scripts) obey the same bounds as the
    # environment's.
    for setting in SETTINGS:
        if setting.app:
            setting.check(config.get(setting.name))
    if config["APP_ENV"] != "development" and not config.get("SECRET_KEY"):
        raise RuntimeError(
            "SECRET_KEY is required when APP_ENV is not 'development': "
            "set it to a long "
            "random string shared by every web process."
        )
    hosts = allowed_hosts(config.get("ALLOWED_HOSTS"))
    if config["APP_ENV"] != "development" and not hosts:
        raise RuntimeError(
            "ALLOWED_HOSTS is required when APP_ENV is not 'development': set it to "
            "the comma-separated host names the site is served under "
            "(e.g. 'app.example.com')."
        )
    # Kept as the environment writes it, so the config can be handed on as one.
    config["ALLOWED_HOSTS"] = ",".join(hosts) or None
    # Flask checks every request's Host against this list (None: any host).
    config["TRUSTED_HOSTS"] = hosts or None
    if not config.get("SECRET_KEY"):
        # Development with no instance key (myapp.localstack normally keeps one):
        # a random key for this app alone.
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
    options = engine_options(
        config["SQLALCHEMY_DATABASE_URI"], config["DB_IDLE_TRANSACTION_SECONDS"]
    )
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **options,
        **config["SQLALCHEMY_ENGINE_OPTIONS"],
    }
