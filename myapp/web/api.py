"""The JSON API: thin views over the run lifecycle and the data store."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

from myapp import runs
from myapp.edge import ApiError, current_requester
from myapp.extensions import get_store
from myapp.models import Run
from myapp.tasks import ValidationError, task_registry
from myapp.web.inputs import idempotency_key, run_filter, run_or_404
from myapp.web.openapi import openapi_document
from myapp.web.params import DATA_QUERY, LOGS_QUERY, RUN_QUERY, RUNS_QUERY, parse_query

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/tasks")
def list_tasks():
    return jsonify([d.describe() for d in task_registry().values()])


@bp.post("/tasks/<name>/runs")
def create_run(name: str):
    try:
        key = idempotency_key(request.headers.get("Idempotency-Key"), "Idempotency-Key")
    except ValidationError as exc:
        message = exc.fields["Idempotency-Key"]
        raise ApiError(
            400, "bad_header", f"Idempotency-Key {message}", exc.fields
        ) from None
    run, _ = runs.start_run(
        name,
        _json_object(),
        source="api",
        requester=current_requester(),
        idempotency_key=key,
    )
    return _accepted(run)


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    query = _query(RUN_QUERY)
    run = run_or_404(run_id)
    if query["wait"]:
        run = runs.wait_for_change(run, query["wait"])
    return jsonify(run.to_dict())


@bp.get("/runs/<run_id>/logs")
def get_run_logs(run_id: str):
    query = _query(LOGS_QUERY)
    return jsonify(runs.read_lines(run_or_404(run_id), after=query["after"]))


@bp.delete("/runs/<run_id>")
def cancel_run(run_id: str):
    return _accepted(runs.cancel_run(run_or_404(run_id), current_requester()))


@bp.post("/runs/<run_id>/rerun")
def rerun(run_id: str):
    run, _ = runs.rerun(run_or_404(run_id), source="api", requester=current_requester())
    return _accepted(run)


@bp.get("/runs")
def list_runs():
    query = _query(RUNS_QUERY)
    try:
        filters = run_filter(query)
        items, cursor = runs.list_runs(
            filters, limit=query["limit"], cursor=query["cursor"]
        )
    except ValidationError as exc:
        raise ApiError(400, "bad_parameter", "invalid query", exc.fields) from None
    next_url = None
    if cursor is not None:
        next_url = url_for(
            ".list_runs", limit=query["limit"], cursor=cursor, **filters.query_args()
        )
    return jsonify({"items": [r.to_dict() for r in items], "next": next_url})


@bp.get("/data")
def get_data():
    query = _query(DATA_QUERY)
    store = get_store()
    page = store.page(**query)
    return jsonify({"total": page.total, "rows": page.rows, "version": store.version()})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


def _accepted(run: Run):
    """202 with the run and its status URL in Location."""
    response = jsonify(run.to_dict())
    response.status_code = 202
    response.headers["Location"] = run.status_url
    return response


def _query(declared) -> dict[str, Any]:
    try:
        return parse_query(request.args, declared)
    except ValidationError as exc:
        raise ApiError(400, "bad_parameter", "invalid query", exc.fields) from None


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object; an empty body means "all defaults"."""
    body = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not body.strip():
        return {}
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send parameters as a JSON object with Content-Type: application/json",
        )
    try:
        # The app's parser: it refuses deep nesting before it recurses.
        payload = current_app.json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "malformed_json", f"the body is not valid JSON: {exc}"
        ) from None
    if not isinstance(payload, dict):
        raise ApiError(
            400,
            "not_an_object",
            'the body must be a JSON object of parameters, e.g. {"rows": 10}',
        )
    return payload
