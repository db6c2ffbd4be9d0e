"""myapp: long work in the background of a Flask + Dash app, recorded and never lost."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from myapp.config import default_config, finalize, from_environ

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config, extensions, Celery, blueprints, CLI, Dash."""
    from myapp import localstack

    test_config = dict(test_config or {})
    instance = test_config.pop("INSTANCE_PATH", None) or os.environ.get("INSTANCE_PATH")
    app = Flask(__name__, instance_path=str(instance or PROJECT_ROOT / "instance"))
    environ = from_environ(os.environ)
    app.config.from_mapping(default_config(app.instance_path))
    app.config.from_mapping(environ)
    app.config.from_mapping(test_config)
    # Development: what `make run` chose (its Redis) and the checkout's kept key,
    # for what neither the environment nor the caller gave.
    localstack.apply(app.config, app.instance_path, {**environ, **test_config})
    finalize(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    _logging_init()

    from myapp.cli import cli_init_app
    from myapp.dashboard import init_dash
    from myapp.extensions import db, migrate, redis_init_app
    from myapp.metrics import metrics_init_app
    from myapp.runs import admission_init_app, waiting_init_app
    from myapp.tasks import tasks_init_app
    from myapp.web import web_init_app
    from myapp.worker import celery_init_app

    metrics_init_app(app)  # first, so it times everything the others add
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    redis_init_app(app)
    # Before Celery: the worker registers every task the registry finds.
    tasks_init_app(app)
    celery_init_app(app)
    admission_init_app(app)
    waiting_init_app(app)
    web_init_app(app)
    cli_init_app(app)
    # Dash mounts last, after the Flask routes its pages link to exist.
    init_dash(app)  # keeps the Dash app in app.extensions["dash"]
    return app


def _logging_init() -> None:
    # One line per run transition goes to stderr unless a server (gunicorn, the
    # Celery worker) has configured logging already.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("myapp").setLevel(logging.INFO)
    # alembic announces each of its plugins at INFO whenever it is imported, in
    # every process: seven lines per start that bury the sign-in lines.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
