"""The baselines: the least a Flask endpoint and a Celery task can do.

A bare Flask endpoint that only calls `apply_async` on a no-op task, and that task.
They run under the same gunicorn.conf.py and the same celeryconfig.py (and the same
Procfile command lines) as our app, so the ratio to them is the cost of our code.

A second endpoint, `/recorded-runs`, also does the work no start of ours can skip:
it looks the bearer token's SHA-256 up and commits a row before `apply_async`,
with SQLAlchemy Core on the same database and the same SQLite settings. The ratio
to it is the cost of our code beyond that work (the ORM, validation, limits,
sessions, CSRF, metrics, the log line).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime

from celery import Celery
from flask import Flask, jsonify, request
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    insert,
    select,
)

# Registers our app's SQLite settings (WAL, synchronous=NORMAL) for every engine of
# this process, the recording endpoint's too.
from myapp.extensions import sqlite_pragmas  # noqa: F401

RECORDED = MetaData()
TOKENS = Table(
    "baseline_tokens",
    RECORDED,
    Column("token_hash", String(64), primary_key=True),
    Column("user_name", String(80), nullable=False),
)
RUNS = Table(
    "baseline_runs",
    RECORDED,
    Column("id", String(36), primary_key=True),
    Column("params", JSON, nullable=False),
    Column("created_by", String(80), nullable=False),
    Column("created_at", DateTime, nullable=False),
)
_USER_BY_TOKEN = select(TOKENS.c.user_name).where(
    TOKENS.c.token_hash == bindparam("token_hash")
)


def create_baseline(
    redis_url: str, database_url: str | None = None
) -> tuple[Flask, Celery]:
    celery_app = Celery("baseline")
    celery_app.config_from_object("celeryconfig")
    celery_app.conf.update(broker_url=redis_url, result_backend=redis_url)

    @celery_app.task(name="noop", shared=False)
    def noop() -> float:
        # The worker's clock when it ran: the drain measurement reads it.
        return time.time()

    app = Flask("baseline")

    @app.post("/runs")
    def start():
        result = noop.apply_async()
        return jsonify({"id": result.id}), 202

    if database_url is not None:
        engine = recorded_engine(database_url)

        @app.post("/recorded-runs")
        def start_recorded():
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            digest = hashlib.sha256(token.strip().encode()).hexdigest()
            run_id = str(uuid.uuid4())
            with engine.begin() as conn:
                user = conn.execute(_USER_BY_TOKEN, {"token_hash": digest}).scalar()
                if user is None:
                    return jsonify({"error": "unauthorized"}), 401
                conn.execute(
                    insert(RUNS),
                    {
                        "id": run_id,
                        "params": request.get_json(silent=True) or {},
                        "created_by": user,
                        "created_at": datetime.now(UTC).replace(tzinfo=None),
                    },
                )
            noop.apply_async(task_id=run_id)
            return jsonify({"id": run_id}), 202, {"Location": f"/runs/{run_id}"}

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    app.extensions["celery"] = celery_app
    return app, celery_app


def recorded_engine(database_url: str) -> Engine:
    """An engine with our app's SQLite settings (registered on import, above)."""
    return create_engine(database_url)


def prepare_recorded(database_url: str, token: str, user_name: str) -> None:
    """The recording endpoint's tables, empty but for the token's hash; called by
    the bench before the baseline web starts (its workers never race to make them)."""
    engine = recorded_engine(database_url)
    RECORDED.drop_all(engine)
    RECORDED.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(TOKENS),
            {
                "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                "user_name": user_name,
            },
        )
    engine.dispose()


def clear_recorded(database_url: str) -> int:
    """Empty the recorded runs between rounds, as the stack empties ours."""
    engine = recorded_engine(database_url)
    with engine.begin() as conn:
        removed = conn.execute(delete(RUNS)).rowcount
    engine.dispose()
    return removed
