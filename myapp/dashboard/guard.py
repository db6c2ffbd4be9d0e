"""Dash's endpoints answer a malformed request with a 4xx, never a 500.

Dash trusts the body of `POST <prefix>_dash-update-component`: it indexes it the way
its renderer builds it, so `{}`, a list, a body without `inputs`, or an output no
callback has raise inside Dash (KeyError, TypeError) and become 500s with a
traceback in the log. `guard_init_app` checks the body against the callback it
names before Dash reads it; each callback then checks the type of every value it
uses (see callbacks.py). A component-suite path Dash does not serve
(`_dash-component-suites/nonexistent/x.js`) is a 404 instead of Dash's
DependencyException.

A refusal is a 400 in the app's JSON error shape and one log line, no traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dash
from dash.exceptions import DependencyException
from flask import Flask, request

from myapp.web.errors import ApiError, error_response

log = logging.getLogger(__name__)

# The renderer's bodies nest about eight deep (body, inputs, a grid request, its
# sort model); Python's parser recurses per level and fails past ~1,000.
MAX_JSON_DEPTH = 32
# Query parameters carrying the handles Dash signs (the page load, a background job
# and its cached result). Dash compares signatures with hmac.compare_digest, which
# raises TypeError for non-ASCII text, so anything else is refused first.
SIGNED_HANDLES = ("endId", "cacheKey", "job", "oldJob", "cancelJob")
_HANDLE = re.compile(r"[!-~]{1,512}")  # printable ASCII, no space
# A JSON string, to its closing quote or to the end if it has none: one pass that
# never retries a start, whatever the escapes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


# For inputs of background callbacks, (component id, property) -> whether a value
# is one the page sends. A request that would start a job with anything else is
# refused, so no Celery message (which carries the request's context) is queued.
JobInputChecks = Mapping[tuple[str, str], Callable[[Any], bool]]


def guard_init_app(
    app: Flask, dash_app: dash.Dash, job_inputs: JobInputChecks | None = None
) -> None:
    """Check every callback request of `dash_app` before Dash reads it."""
    job_inputs = dict(job_inputs or {})
    endpoint = dash_app.config.requests_pathname_prefix + "_dash-update-component"
    for callback in dash_app.callback_map.values():
        for dependency in [*callback["inputs"], *callback["state"]]:
            # The checks below compare ids as strings; pattern-matching ids (dicts
            # with wildcards) would need their own rule.
            if not isinstance(dependency["id"], str):
                raise TypeError(f"pattern-matching id not checked: {dependency}")

    @app.before_request
    def _check_dash_update() -> None:
        if request.path != endpoint or request.method != "POST":
            return
        try:
            check_handles(request.args)
            if nests_too_deep(request.get_data(cache=True)):
                raise BadDashRequest("body", f"nests deeper than {MAX_JSON_DEPTH}")
            # Not JSON, or not sent as JSON: Flask answers 400 or 415 itself.
            body = request.get_json()
            check_update_request(body, dash_app.callback_map)
            # Without a cacheKey, Dash starts the job; polls send no input values.
            if "cacheKey" not in request.args:
                check_job_inputs(body, dash_app.callback_map, job_inputs)
        except BadDashRequest as exc:
            message = f"{exc.field} {exc}"
            log.info("dash: refused a callback request: %s", message)
            raise ApiError(
                400, "invalid_dash_request", message, {exc.field: str(exc)}
            ) from None

    @app.errorhandler(DependencyException)
    def _no_such_resource(exc: DependencyException):
        return error_response(404, "not_found", "Dash serves no such file")


class BadDashRequest(ValueError):
    """A callback request that does not fit the callback it names."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def nests_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in JSON text nest deeper than `limit`, found
    without parsing it (so without recursion). Brackets inside strings do not
    count; unbalanced ones do, as the parser would recurse into them."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than the brackets it has
    depth = 0
    for byte in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_handles(args: Any) -> None:
    """Raise BadDashRequest unless every signed handle in the query is one Dash
    could have issued (it still verifies the signature itself)."""
    for name in SIGNED_HANDLES:
        for value in args.getlist(name):
            if not _HANDLE.fullmatch(value):
                raise BadDashRequest(name, "is not a handle this app issued")


def check_update_request(body: Any, callback_map: Mapping[str, Any]) -> None:
    """Raise BadDashRequest unless `body` is a request for one of the callbacks
    in `callback_map`, with its outputs, inputs and state, in order."""
    if not isinstance(body, dict):
        raise BadDashRequest("body", "must be a JSON object")
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        raise BadDashRequest("output", "must name a callback of this page")
    callback = callback_map[output]
    if "callback" not in callback:
        raise BadDashRequest("output", "names a callback that runs in the browser")
    _check_outputs(body.get("outputs"), output)
    _check_dependencies("inputs", body.get("inputs"), callback["inputs"])
    _check_dependencies("state", body.get("state", []), callback["state"])
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise BadDashRequest("changedPropIds", "must be a list of strings")


def check_job_inputs(
    body: dict[str, Any], callback_map: Mapping[str, Any], checks: JobInputChecks
) -> None:
    """Raise BadDashRequest if `body` (already checked) would start a background
    job with an input value its check refuses."""
    if not callback_map[body["output"]].get("background"):
        return
    for item in body["inputs"]:
        check = checks.get((item["id"], item["property"]))
        if check is not None and not check(item.get("value")):
            raise BadDashRequest(
                "inputs", f"{item['id']}.{item['property']} is not a job request"
            )


def _check_outputs(outputs: Any, output: str) -> None:
    declared = _declared_outputs(output)
    if output.startswith(".."):
        sent = outputs if isinstance(outputs, list) else None
    else:
        sent = [outputs]
    if sent is None or [_dependency(o) for o in sent] != declared:
        raise BadDashRequest("outputs", f"must be the outputs of {output}")


def _check_dependencies(
    field: str, sent: Any, declared: Sequence[Mapping[str, Any]]
) -> None:
    expected = [(d["id"], d["property"]) for d in declared]
    if not isinstance(sent, list) or [_dependency(d) for d in sent] != expected:
        raise BadDashRequest(field, f"must be {len(expected)} {{id, property, value}}")


def _dependency(item: Any) -> tuple[Any, Any] | None:
    """(id, property) of one sent dependency; the property without Dash's
    `@hash` suffix of duplicate outputs."""
    if not isinstance(item, dict):
        return None
    prop = item.get("property")
    if isinstance(prop, str):
        prop = prop.split("@", 1)[0]
    return item.get("id"), prop


def _declared_outputs(output: str) -> list[tuple[str, str]]:
    """The (id, property) pairs of a callback map key: `id.prop`, or
    `..id.prop...id.prop..` for several outputs."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    pairs = []
    for part in parts:
        ident, prop = part.rsplit(".", 1)
        pairs.append((ident, prop.split("@", 1)[0]))
    return pairs
