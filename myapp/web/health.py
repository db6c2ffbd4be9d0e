"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from myapp.extensions import db, get_redis, get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks: dict[str, str] = {}
    pings = {"redis": get_redis()}
    if current_app.config["DATA_REDIS_URL"] != current_app.config["REDIS_URL"]:
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
    if failed:
        message = "not ready: " + ", ".join(f"{k} {v}" for k, v in failed.items())
        body = {
            "error": {"code": "not_ready", "message": message, "fields": failed},
            "checks": checks,
        }
        return jsonify(body), 503
    return jsonify({"status": "ready", "checks": checks})
