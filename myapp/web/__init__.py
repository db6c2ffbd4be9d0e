"""The Flask side: the JSON API, the HTML pages, signing in and the gate every
request passes, health probes, the OpenAPI document, the declared query parameters
and what the API and the pages read alike (`inputs`), error handlers, request
guards (hosts, body and JSON limits), security headers, and the gunicorn worker
that serves it all (`server`, its request framing in `framing`)."""

from __future__ import annotations

from flask import Flask


def web_init_app(app: Flask) -> None:
    """Register error handlers, request guards, sign-in and its gate (with CSRF
    protection), blueprints and security headers."""
    # Imported here, not at the top: gunicorn's master imports `myapp.web.server`
    # (gunicorn.conf.py) and must not load the whole app to do it (it has no use
    # for it, and it took a few seconds and ~50 MB there).
    from myapp.web import account, api, apidocs, health, metrics, schedule_pages
    from myapp.web import schedules_api as _  # noqa: F401  (routes on api.bp)
    from myapp.web.auth import allow_anonymous, auth_init_app
    from myapp.web.errors import errors_init_app
    from myapp.web.guards import guards_init_app
    from myapp.web.security import security_init_app
    from myapp.web.views import views_init_app
    from myapp.web.words import words_init_app

    errors_init_app(app)
    guards_init_app(app)
    auth_init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    if app.config["METRICS_PUBLIC"]:
        allow_anonymous(app, "metrics.get_metrics")
    app.register_blueprint(api.bp)
    app.register_blueprint(apidocs.bp)
    app.register_blueprint(account.bp)
    views_init_app(app)
    words_init_app(app)
    app.register_blueprint(schedule_pages.bp)
    security_init_app(app)
