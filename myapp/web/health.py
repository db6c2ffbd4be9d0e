"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from myapp.extensions import db, get_redis

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks: dict[str, str] = {}
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means "not ready", with its reason
        checks["redis"] = f"unreachable: {type(exc).__name__}"
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
