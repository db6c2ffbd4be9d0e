"""Liveness and readiness probes."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from myapp import beat
from myapp.extensions import db, get_redis, get_store
from myapp.redis_clients import data_target, redis_target

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when Redis (the data set's too, when it has its own) and the database
    answer (503 names the one that does not).

    `checks.beat` also says whether beat is sending the schedule, but does not make
    the web unready: taking web processes out of service would not bring beat back,
    and the site works without it for a while. Alert on it instead (or on
    `myapp_beat_last_tick_age_seconds`).
    """
    checks: dict[str, str] = {}
    pings = {"redis": get_redis()}
    if data_target(current_app.config) != redis_target(current_app.config):
        pings["data_redis"] = get_store().redis
    for name, client in pings.items():
        try:
            client.ping()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", with its reason
            checks[name] = f"unreachable: {type(exc).__name__}"
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        db.session.rollback()
        checks["database"] = f"unreachable: {type(exc).__name__}"
    failed = {name: state for name, state in checks.items() if state != "ok"}
    if checks["redis"] == "ok":
        checks["beat"] = _beat_state()
    if failed:
        message = "not ready: " + ", ".join(f"{k} {v}" for k, v in failed.items())
        body = {
            "error": {"code": "not_ready", "message": message, "fields": failed},
            "checks": checks,
        }
        return jsonify(body), 503
    return jsonify({"status": "ready", "checks": checks})


def _beat_state() -> str:
    celery_app = current_app.extensions["celery"]
    bound = beat.takeover_bound(celery_app)
    try:
        tick = beat.last_tick(celery_app, get_redis())
    except Exception as exc:
        return f"unknown: {type(exc).__name__}"
    if tick is None:
        return "not ticked yet: no beat has sent the schedule"
    age = time.time() - tick
    if age > bound:
        return f"late: last tick {age:.0f} s ago, more than {bound:.0f} s"
    return "ok"
