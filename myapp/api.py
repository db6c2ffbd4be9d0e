"""The JSON API: thin views over the run lifecycle and the data store."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request, url_for

from myapp import runs
from myapp.errors import ApiError
from myapp.extensions import get_store
from myapp.openapi import openapi_document
from myapp.registry import ValidationError
from myapp.store import CATEGORIES, SORT_FIELDS
from myapp.tasks import DEFINITIONS, TASK_NAMES

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 1000
MAX_OFFSET = 10**9


@bp.get("/tasks")
def list_tasks():
    return jsonify([d.describe() for d in DEFINITIONS])


@bp.post("/tasks/<name>/runs")
def create_run(name: str):
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(
            400,
            "bad_header",
            "Idempotency-Key must be 1 to 200 characters",
            {"Idempotency-Key": "must be 1 to 200 characters"},
        )
    run, _ = runs.start_run(name, _json_object(), source="api", idempotency_key=key)
    response = jsonify(run.to_dict())
    response.status_code = 202
    response.headers["Location"] = run.status_url
    return response


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    return jsonify(_run_or_404(run_id).to_dict())


@bp.delete("/runs/<run_id>")
def cancel_run(run_id: str):
    run = runs.cancel_run(_run_or_404(run_id))
    response = jsonify(run.to_dict())
    response.status_code = 202
    response.headers["Location"] = run.status_url
    return response


@bp.get("/runs")
def list_runs():
    args = request.args
    _reject_unknown(args, {"task", "state", "source", "limit", "cursor"})
    try:
        filters = runs.parse_filter(args, TASK_NAMES)
    except ValidationError as exc:
        raise ApiError(400, "bad_parameter", "invalid filter", exc.fields) from None
    limit = _int_arg("limit", 50, 1, 200)
    try:
        items, cursor = runs.list_runs(
            filters, limit=limit, cursor=args.get("cursor") or None
        )
    except ValidationError as exc:
        raise ApiError(400, "bad_parameter", "invalid cursor", exc.fields) from None
    next_url = None
    if cursor is not None:
        query = {k: v for k, v in vars(filters).items() if v is not None}
        next_url = url_for(".list_runs", limit=limit, cursor=cursor, **query)
    return jsonify({"items": [r.to_dict() for r in items], "next": next_url})


@bp.get("/data")
def get_data():
    args = request.args
    _reject_unknown(args, {"offset", "limit", "sort", "order", "run_id", "category"})
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    limit = _int_arg("limit", 100, 1, MAX_PAGE)
    sort = _choice_arg("sort", "created_at", SORT_FIELDS)
    order = _choice_arg("order", "desc", ("asc", "desc"))
    category = _choice_arg("category", None, CATEGORIES)
    run_id = args.get("run_id") or None
    if run_id is not None and len(run_id) > 64:
        raise ApiError(
            400,
            "bad_parameter",
            "invalid run_id",
            {"run_id": "must be at most 64 characters"},
        )
    store = get_store()
    page = store.page(
        offset=offset,
        limit=limit,
        sort=sort,
        order=order,
        run_id=run_id,
        category=category,
    )
    return jsonify({"total": page.total, "rows": page.rows, "version": store.version()})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


def _run_or_404(run_id: str):
    run = runs.get_run(run_id) if len(run_id) <= 64 else None
    if run is None:
        raise ApiError(404, "run_not_found", f"no run has id {run_id!r}")
    return run


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
        payload = json.loads(body)
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


def _reject_unknown(args, known: set[str]) -> None:
    unknown = {k: "is not a known query parameter" for k in args if k not in known}
    if unknown:
        raise ApiError(400, "bad_parameter", "unknown query parameter", unknown)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, "bad_parameter", f"invalid {name}", {name: "must be an integer"}
        ) from None
    if not low <= value <= high:
        raise ApiError(
            400,
            "bad_parameter",
            f"invalid {name}",
            {name: f"must be between {low} and {high}"},
        )
    return value


def _choice_arg(name: str, default: str | None, choices: tuple[str, ...]) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise ApiError(
            400,
            "bad_parameter",
            f"invalid {name}",
            {name: "must be one of " + ", ".join(choices)},
        )
    return raw
