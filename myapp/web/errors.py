"""Every error leaves as one JSON shape: {"error": {"code", "message", "fields"}}.

Pages for people (anything outside the API that asks for HTML) get a short HTML
page instead; neither ever carries a stack trace.
"""

from __future__ import annotations

import logging
from html import escape

import redis
from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from myapp.runs import IdempotencyConflict, NotAllowed, RunFinished, StartRefused
from myapp.schedules import ScheduleNameTaken
from myapp.tasks import UnknownTask, ValidationError

log = logging.getLogger(__name__)

# Dash's own endpoints (`/dash/_dash-update-component`, its component suites) are
# read by the Dash renderer, not by people.
_JSON_PREFIXES = ("/api/", "/healthz", "/readyz", "/dash/_dash-")

CSRF_MESSAGE = (
    "The form expired or was not sent from this site; reload the page and try again."
)


class ApiError(Exception):
    """An error with its HTTP status, machine code, message and per-field messages."""

    def __init__(
        self, status: int, code: str, message: str, fields: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def wants_json() -> bool:
    if request.path.startswith(_JSON_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(
    status: int, code: str, message: str, fields: dict | None = None
) -> tuple[Response, int] | tuple[str, int]:
    if wants_json():
        body = {"error": {"code": code, "message": message, "fields": fields or {}}}
        return jsonify(body), status
    return _html_page(status, code, message, fields or {}), status


def _html_page(status: int, code: str, message: str, fields: dict) -> str:
    """The error as a page in the site's layout; bare HTML if that cannot render."""
    title = code.replace("_", " ").capitalize()
    try:
        return render_template(
            "error.html", status=status, title=title, message=message, fields=fields
        )
    except Exception:  # a broken template must not turn a 404 into a 500
        log.exception("error page failed to render")
    items = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in fields.items())
    return (
        f"<!doctype html><title>{status} {escape(title)}</title>"
        f"<h1>{status}</h1><p>{escape(message)}</p><ul>{items}</ul>"
        '<p><a href="/">Back to myapp</a></p>'
    )


def errors_init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields)

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        return error_response(
            422, "invalid_parameters", "invalid parameters", exc.fields
        )

    @app.errorhandler(UnknownTask)
    def _unknown_task(exc: UnknownTask):
        return error_response(404, "unknown_task", f"no task is named {exc.args[0]!r}")

    @app.errorhandler(StartRefused)
    def _refused(exc: StartRefused):
        body, status = error_response(exc.status, exc.code, str(exc))
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return body, status, headers

    @app.errorhandler(IdempotencyConflict)
    def _key_reused(exc: IdempotencyConflict):
        return error_response(
            422, "idempotency_key_reused", str(exc), {"Idempotency-Key": str(exc)}
        )

    @app.errorhandler(CSRFError)
    def _csrf_failed(exc: CSRFError):
        log.info("form refused on %s: %s", request.path, exc.description)
        return error_response(400, "csrf_failed", CSRF_MESSAGE)

    @app.errorhandler(NotAllowed)
    def _not_allowed(exc: NotAllowed):
        return error_response(403, "forbidden", str(exc))

    @app.errorhandler(ScheduleNameTaken)
    def _name_taken(exc: ScheduleNameTaken):
        return error_response(409, "name_taken", str(exc), {"name": "is taken"})

    @app.errorhandler(RunFinished)
    def _finished(exc: RunFinished):
        return error_response(409, "run_finished", "the run has already finished")

    @app.errorhandler(OperationalError)
    def _database_down(exc: OperationalError):
        log.error("database unreachable: %s", exc.orig)
        return error_response(
            503, "database_unavailable", "the database is unreachable"
        )

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: redis.RedisError):
        log.error("redis unreachable: %s", exc)
        return error_response(503, "redis_unavailable", "the data store is unreachable")

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        if limit is not None and (request.content_length or 0) > limit:
            # The web worker's words for a body it never let through.
            message = f"the request body is larger than {limit} bytes"
        else:  # Werkzeug's form limits: too many parts, or a part too long
            message = "the form has too many fields, or a field that is too long"
        return error_response(413, "request_entity_too_large", message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:
            body, status = response
            return body, status, {"Allow": ", ".join(exc.valid_methods)}
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side")
