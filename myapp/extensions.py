"""Extensions, unbound: each app binds them in `create_app`."""

from __future__ import annotations

import sqlite3
from typing import Any

import redis
from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

from myapp.redis_clients import data_target, redis_target
from myapp.store import DataStore


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
# render_as_batch lets Alembic alter SQLite tables (it copies them).
migrate = Migrate(render_as_batch=True, compare_type=True)
# CSRF tokens for forms, and for API and Dash calls made with a session; bound, and
# applied where it is needed, by myapp.web.auth.
csrf = CSRFProtect()
# Browser sessions; the loaders (session and bearer token) are set by myapp.web.auth.
login_manager = LoginManager()


def redis_init_app(app: Flask) -> None:
    """One Redis pool per app, kept in `app.extensions`, and the data store on a
    pool of its own (DATA_REDIS_URL, REDIS_URL by default); both found through the
    sentinels when REDIS_SENTINELS is set (myapp.redis_clients)."""
    app.extensions["redis"] = redis_target(app.config).fail_fast_client(
        decode_responses=True
    )
    app.extensions["store"] = DataStore.from_target(
        data_target(app.config), app.config["DATA_PREFIX"]
    )


def get_store() -> DataStore:
    return current_app.extensions["store"]


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


@event.listens_for(Engine, "connect")
def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Every engine of a process that imports this module, the app's and the
    benchmark's: WAL lets the web app read while a worker writes; only SQLite needs
    this."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
