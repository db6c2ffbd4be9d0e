"""What every HTTP edge of the app shares: the Flask pages and API (`myapp.web`) and
the Dash pages (`myapp.dashboard`), which depend on this module and never on each
other.

- `current_requester()`: who is asking (the signed-in user's name and role), as
  admission, cancel and the start rate limit see them (the user; the client address
  only for a caller nobody signed in).
- The one shape of an error answer: JSON `{"error": {"code", "message", "fields"}}`,
  or a short HTML page for a person's browser; neither ever carries a stack trace.
  `ApiError` is an error raised with its answer; `myapp.web.errors` maps every other
  error to one.
- `MAX_JSON_DEPTH`: how deeply request JSON may nest, for every reader of it.
"""

from __future__ import annotations

import logging
from html import escape

from flask import Response, jsonify, render_template, request
from flask_login import current_user

from myapp.runs import Requester
from myapp.users import Role

log = logging.getLogger(__name__)

# Task parameters are flat and Dash's callback payloads a few levels deep; the
# parser's own limit (Python's recursion limit) is far above this.
MAX_JSON_DEPTH = 100

# Dash's own endpoints (`/dash/_dash-update-component`, its component suites) are
# read by the Dash renderer, not by people.
_JSON_PREFIXES = ("/api/", "/healthz", "/readyz", "/dash/_dash-")


def current_requester() -> Requester:
    """Who is asking, as admission, cancel and the start rate limit see them."""
    if current_user.is_authenticated:
        return Requester(
            name=current_user.name,
            role=Role(current_user.role),
            limit_key=f"user:{current_user.name}",
        )
    return Requester(
        name=None, role=None, limit_key=f"addr:{request.remote_addr or 'unknown'}"
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
