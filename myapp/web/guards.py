"""What a request may look like before any view sees it.

- Hosts: with ALLOWED_HOSTS set (required outside development) Flask checks the Host
  header against it (TRUSTED_HOSTS); any other host gets 400 before anything else
  runs. Whatever the host, every Location header leaves as a path on this site, so no
  redirect (Werkzeug's slash redirect included) ever names a host from the request.
- Bodies: a chunked body (no Content-Length) obeys MAX_CONTENT_LENGTH like any
  other: 413, never a body silently cut at the limit (Werkzeug's stream stops at
  the limit without saying so).
- JSON: documents nested deeper than MAX_JSON_DEPTH are refused before the parser
  recurses, for every reader of request JSON (the API, Dash's callback endpoint).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadHost, SecurityError
from werkzeug.http import parse_set_header

from myapp.edge import MAX_JSON_DEPTH

__all__ = [
    "MAX_JSON_DEPTH",
    "ChunkedBodyLimit",
    "GuardedJSONProvider",
    "check_json_depth",
    "guards_init_app",
    "local_location",
]

# The tokens that matter for nesting: strings (skipped whole, brackets inside them
# do not count) and brackets. A string without its closing quote runs to the end
# (the parser refuses it there without recursing): a string that had to close
# would be rescanned from each of its quotes when it does not, quadratic time
# (~40 s for 64 KiB of escaped quotes).
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


def check_json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """ValueError if `text` nests arrays and objects deeper than `limit`, found
    without recursion (one pass over its brackets)."""
    depth = 0
    for token in _JSON_NESTING.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels")
        elif bracket in ("]", "}"):
            depth -= 1


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with the nesting depth checked before parsing."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if isinstance(s, bytes | bytearray):
            # What json.loads does with bytes, so the check sees the same text.
            s = s.decode(json.detect_encoding(s), "surrogatepass")
        check_json_depth(s)
        return super().loads(s, **kwargs)


class ChunkedBodyLimit:
    """WSGI middleware: a body without Content-Length (chunked) is read up to
    MAX_CONTENT_LENGTH + 1 bytes and handed on with its length, so the app refuses
    it exactly as it refuses a too-long Content-Length (413)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        chunked = "chunked" in parse_set_header(environ.get("HTTP_TRANSFER_ENCODING"))
        if limit is not None and chunked and not environ.get("CONTENT_LENGTH"):
            # The web worker buffers every request before the app runs, so this
            # read never waits on the client (with other servers it is bounded
            # by the limit).
            body = _read_at_most(environ["wsgi.input"], limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # The server has decoded the chunks; Werkzeug ignores a length that
            # comes with chunked, and the coding is hop-by-hop anyway.
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.wsgi_app(environ, start_response)


def _read_at_most(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(left, 64 * 1024))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def local_location(location: str) -> str:
    """The path (with query and fragment) of a Location: never another host."""
    parts = urlsplit(location)
    # Browsers read //host, /\host and \\host as another host, like http://host.
    foreign = location.startswith(("//", "/\\", "\\"))
    if not parts.scheme and not parts.netloc and not foreign:
        return location
    path = "/" + parts.path.lstrip("/\\")
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def _refuse_bad_host() -> None:
    # Flask found the Host untrusted (or not a host name at all) while routing and
    # saved the error for later; raise it before any other hook runs: they may
    # build URLs, and without a host no URL can be built.
    if isinstance(request.routing_exception, SecurityError | BadHost):
        raise request.routing_exception


def _host_refused(exc: SecurityError | BadHost) -> tuple[Response, int]:
    # Always JSON: the HTML error page links to the site, and links need a host.
    if isinstance(exc, SecurityError):
        problem = "is not a host this site answers to"
    else:
        problem = "is not a valid host name"
    body = {
        "error": {
            "code": "bad_host",
            "message": f"the Host header {problem}",
            "fields": {"Host": problem},
        }
    }
    return jsonify(body), 400


def _paths_only(response: Response) -> Response:
    location = response.headers.get("Location")
    if location:
        response.headers["Location"] = local_location(location)
    return response


def guards_init_app(app: Flask) -> None:
    """Install the host check, relative redirects, the chunked body limit and the
    depth-checked JSON parser on `app`."""
    app.json = GuardedJSONProvider(app)
    app.wsgi_app = ChunkedBodyLimit(app, app.wsgi_app)  # type: ignore[method-assign]
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_bad_host)
    app.register_error_handler(SecurityError, _host_refused)
    app.register_error_handler(BadHost, _host_refused)
    app.after_request(_paths_only)
