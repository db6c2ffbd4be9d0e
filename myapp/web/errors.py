"""Every error leaves as one JSON shape: {"error": {"code", "message", "fields"}}
(`myapp.edge.error_response`); pages for people (anything outside the API that asks
for HTML) get a short HTML page instead. Neither ever carries a stack trace.

The domain raises domain errors and knows nothing of HTTP: `DOMAIN_ERRORS` below is
the one place that gives each its status, code and message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from myapp.edge import ApiError, error_response, wants_json
from myapp.runs import IdempotencyConflict, NotAllowed, RunFinished, StartRefused
from myapp.schedules import ScheduleNameTaken
from myapp.tasks import UnknownTask, ValidationError

__all__ = ["CSRF_MESSAGE", "DOMAIN_ERRORS", "ApiError", "errors_init_app"]

log = logging.getLogger(__name__)

CSRF_MESSAGE = (
    "The form expired or was not sent from this site; reload the page and try again."
)

# An error's code, message and per-field messages, read from the error.
Describe = Callable[[Any], tuple[str, str, dict[str, str]]]

# Each domain error's HTTP status, and how its answer reads. A subclass answers as
# the nearest class listed (a StartRefused says its own `code`).
DOMAIN_ERRORS: dict[type[Exception], tuple[int, Describe]] = {
    ValidationError: (
        422,
        lambda e: ("invalid_parameters", "invalid parameters", e.fields),
    ),
    UnknownTask: (
        404,
        lambda e: ("unknown_task", f"no task is named {e.args[0]!r}", {}),
    ),
    StartRefused: (429, lambda e: (e.code, str(e), {})),
    IdempotencyConflict: (
        422,
        lambda e: ("idempotency_key_reused", str(e), {"Idempotency-Key": str(e)}),
    ),
    NotAllowed: (403, lambda e: ("forbidden", str(e), {})),
    ScheduleNameTaken: (409, lambda e: ("name_taken", str(e), {"name": "is taken"})),
    RunFinished: (
        409,
        lambda e: ("run_finished", "the run has already finished", {}),
    ),
}


def domain_error_response(exc: Exception) -> Any:
    """The answer to a domain error of DOMAIN_ERRORS, with Retry-After when the
    error says when to come back."""
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            status, describe = DOMAIN_ERRORS[cls]
            break
    else:
        raise TypeError(f"{type(exc).__name__} is not in DOMAIN_ERRORS")
    body, status = error_response(status, *describe(exc))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return body, status, {"Retry-After": str(retry_after)}
    return body, status


def _api_error(exc: ApiError) -> Any:
    # The API's messages are fragments ("no run has id 'x'"); a page for a person
    # says them as a sentence ("No run has id 'x'.").
    message = exc.message if wants_json() else _sentence(exc.message)
    return error_response(exc.status, exc.code, message, exc.fields)


def _sentence(text: str) -> str:
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def errors_init_app(app: Flask) -> None:
    """Answer every error in the one shape: ApiError as raised, domain errors by
    DOMAIN_ERRORS, an unreachable dependency 503, HTTP errors by their status."""
    app.register_error_handler(ApiError, _api_error)
    for error_class in DOMAIN_ERRORS:
        app.register_error_handler(error_class, domain_error_response)
    _dependency_errors_init_app(app)
    _http_errors_init_app(app)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side")


def _dependency_errors_init_app(app: Flask) -> None:
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


def _http_errors_init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_failed(exc: CSRFError):
        log.info("form refused on %s: %s", request.path, exc.description)
        return error_response(400, "csrf_failed", CSRF_MESSAGE)

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
