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
    test_config = dict(test_config or {})
    instance = test_config.pop("INSTANCE_PATH", None) or os.environ.get("INSTANCE_PATH")
    app = Flask(__name__, instance_path=str(instance or PROJECT_ROOT / "instance"))
    app.config.from_mapping(default_config(app.instance_path))
    app.config.from_mapping(from_environ(os.environ))
    app.config.from_mapping(test_config)
    finalize(app.config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    _logging_init()

    from myapp import api, health, views
    from myapp.cli import cli_init_app
    from myapp.errors import errors_init_app
    from myapp.extensions import db, migrate, redis_init_app
    from myapp.queue import celery_init_app

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    redis_init_app(app)
    celery_init_app(app)
    errors_init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    views.views_init_app(app)
    cli_init_app(app)
    from myapp.security import security_init_app  # headers, rate limit (issue 5)

    security_init_app(app)
    # Dash mounts here (issue: Dash pages), after the routes it links to exist.
    from myapp.dashboard import init_dash

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
