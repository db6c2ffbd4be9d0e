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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dash
from dash.exceptions import DependencyException
from flask import Flask, request
from werkzeug.exceptions import BadRequest

from myapp.edge import MAX_JSON_DEPTH, ApiError, error_response

log = logging.getLogger(__name__)

# Query parameters carrying the handles Dash signs (the page load, a background job
# and its cached result). Dash compares signatures with hmac.compare_digest, which
# raises TypeError for non-ASCII text, so anything else is refused first.
SIGNED_HANDLES = ("endId", "cacheKey", "job", "oldJob", "cancelJob")
_HANDLE = re.compile(r"[!-~]{1,512}")  # printable ASCII, no space


# For inputs of background callbacks, (component id, property) -> whether a value
# is one the page sends. A request that would start a job with anything else is
# refused, so no Celery message (which carries the request's context) is queued.
JobInputChecks = Mapping[tuple[str, str], Callable[[Any], bool]]


def guard_init_app(
    app: Flask, dash_app: dash.Dash, job_inputs: JobInputChecks | None = None
) -> None:
    """Check every callback request of `dash_app` before Dash reads it. Call it
    once every callback is declared (after Dash's setup, which adds its own)."""
    job_inputs = dict(job_inputs or {})
    shapes = callback_shapes(dash_app.callback_map)
    endpoint = dash_app.config.requests_pathname_prefix + "_dash-update-component"

    @app.before_request
    def _check_dash_update() -> None:
        if request.path != endpoint or request.method != "POST":
            return
        try:
            check_handles(request.args)
            body = _json_body()
            shape = check_update_request(body, shapes)
            # Without a cacheKey, Dash starts the job; polls send no input values.
            if shape.background and "cacheKey" not in request.args:
                check_job_inputs(body, job_inputs)
        except BadDashRequest as exc:
            message = f"{exc.field} {exc}"
            log.info("dash: refused a callback request: %s", message)
            raise ApiError(
                400, "invalid_dash_request", message, {exc.field: str(exc)}
            ) from None

    @app.errorhandler(DependencyException)
    def _no_such_resource(exc: DependencyException):
        return error_response(404, "not_found", "Dash serves no such file")


Pairs = list[tuple[Any, Any]]


@dataclass(frozen=True)
class CallbackShape:
    """What a request for one server-side callback carries: (id, property) of its
    outputs, inputs and state, in order."""

    several_outputs: bool
    outputs: Pairs
    inputs: Pairs
    state: Pairs
    background: bool


def callback_shapes(callback_map: Mapping[str, Any]) -> dict[str, CallbackShape | None]:
    """The shape of each callback of a Dash app's map, None for those that run in
    the browser (clientside callbacks have no server side)."""
    shapes: dict[str, CallbackShape | None] = {}
    for key, callback in callback_map.items():
        pairs = {
            field: [(d["id"], d["property"]) for d in callback[field]]
            for field in ("inputs", "state")
        }
        for ident, _ in pairs["inputs"] + pairs["state"]:
            # Ids are compared as strings; pattern-matching ids (dicts with
            # wildcards) would need a rule of their own.
            if not isinstance(ident, str):
                raise TypeError(f"pattern-matching id not checked: {ident!r}")
        if "callback" not in callback:
            shapes[key] = None
            continue
        shapes[key] = CallbackShape(
            several_outputs=key.startswith(".."),
            outputs=_declared_outputs(key),
            inputs=pairs["inputs"],
            state=pairs["state"],
            background=bool(callback.get("background")),
        )
    return shapes


def _json_body() -> Any:
    """The request's JSON (not sent as JSON: Flask's 415)."""
    try:
        return request.get_json()
    except BadRequest:
        # Not JSON, or nested too deep: the app's parser checks depth first.
        raise BadDashRequest(
            "body", f"must be JSON nested at most {MAX_JSON_DEPTH} levels deep"
        ) from None


class BadDashRequest(ValueError):
    """A callback request that does not fit the callback it names."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_handles(args: Any) -> None:
    """Raise BadDashRequest unless every signed handle in the query is one Dash
    could have issued (it still verifies the signature itself)."""
    for name in SIGNED_HANDLES:
        for value in args.getlist(name):
            if not _HANDLE.fullmatch(value):
                raise BadDashRequest(name, "is not a handle this app issued")


def check_update_request(
    body: Any, shapes: Mapping[str, CallbackShape | None]
) -> CallbackShape:
    """The shape of the callback `body` asks for; BadDashRequest unless the body
    carries that callback's outputs, inputs and state, in order."""
    if not isinstance(body, dict):
        raise BadDashRequest("body", "must be a JSON object")
    output = body.get("output")
    if not isinstance(output, str) or output not in shapes:
        raise BadDashRequest("output", "must name a callback of this page")
    shape = shapes[output]
    if shape is None:
        raise BadDashRequest("output", "names a callback that runs in the browser")
    outputs = body.get("outputs")
    sent = outputs if shape.several_outputs else [outputs]
    if not isinstance(sent, list) or _pairs(sent) != shape.outputs:
        raise BadDashRequest("outputs", f"must be the outputs of {output}")
    for field, declared in (("inputs", shape.inputs), ("state", shape.state)):
        sent = body.get(field, [])
        if not isinstance(sent, list) or _pairs(sent) != declared:
            raise BadDashRequest(
                field, f"must be {len(declared)} {{id, property, value}}"
            )
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        raise BadDashRequest("changedPropIds", "must be a list of strings")
    return shape


def check_job_inputs(body: dict[str, Any], checks: JobInputChecks) -> None:
    """Raise BadDashRequest if a request (already checked) that starts a
    background job carries an input value its check refuses."""
    for item in body["inputs"]:
        check = checks.get((item["id"], item["property"]))
        if check is not None and not check(item.get("value")):
            raise BadDashRequest(
                "inputs", f"{item['id']}.{item['property']} is not a job request"
            )


def _pairs(items: list[Any]) -> Pairs:
    return [_dependency(item) for item in items]


def _dependency(item: Any) -> tuple[Any, Any]:
    """(id, property) of one sent dependency; the property without Dash's
    `@hash` suffix of duplicate outputs."""
    if not isinstance(item, dict):
        return None, None
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
