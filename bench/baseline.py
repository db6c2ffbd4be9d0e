"""The baselines: the least a Flask endpoint and a Celery task can do.

A bare Flask endpoint that only calls `apply_async` on a no-op task, and that task.
They run under the same gunicorn.conf.py and the same celeryconfig.py (and the same
Procfile command lines) as our app, so the ratio to them is the cost of our code.
"""

from __future__ import annotations

import time

from celery import Celery
from flask import Flask, jsonify


def create_baseline(redis_url: str) -> tuple[Flask, Celery]:
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

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    app.extensions["celery"] = celery_app
    return app, celery_app
