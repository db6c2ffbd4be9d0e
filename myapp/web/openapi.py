"""The OpenAPI 3 document of the JSON API, built from the task definitions so the
parameter schemas are the ones the server validates with.

Every operation needs credentials (a bearer token, or the browser's session cookie
with the CSRF token in `X-CSRFToken` for POST and DELETE) except this document and
the health probes, which declare `security: []`.

One function per group of paths; the schemas they refer to are
`openapi_schemas.components()`."""

from __future__ import annotations

from typing import Any

from myapp.tasks import TaskDefinition, task_registry
from myapp.web.openapi_schemas import (
    OPEN,
    SCHEDULE_PATCH,
    SECURED,
    components,
    schedule_create_schema,
)
from myapp.web.params import (
    DATA_QUERY,
    LOGS_QUERY,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    RUN_QUERY,
    RUNS_QUERY,
)

# The {run_id} of every path about one run.
RUN_ID_PARAMETER: dict[str, Any] = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

# The {schedule_id} of every path about one schedule.
SCHEDULE_ID_PARAMETER: dict[str, Any] = {
    "name": "schedule_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
}

_ERROR_TEXT = {
    400: "bad request",
    401: "no credentials, or bad ones",
    403: "the role does not allow it",
    404: "not found",
    409: "conflict",
    413: "body too large",
    415: "not JSON",
    422: "invalid parameters",
    429: "too many runs",
    503: "a dependency is unreachable",
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        **_task_list_paths(),
        **_run_paths(),
        **_run_list_paths(),
        **_data_paths(),
        **_schedule_list_paths(),
        **_schedule_paths(),
        **_probe_paths(),
    }
    for definition in task_registry().values():
        paths.update(_start_paths(definition))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "myapp",
            "version": "1",
            "description": "Start long tasks, follow their runs, page their data.",
        },
        "paths": paths,
        "security": SECURED,
        "components": components(),
    }


# -- building blocks ----------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _accepted(description: str = "accepted; poll the Location") -> dict[str, Any]:
    """A 202 answer: the run, and its status URL in Location."""
    location = {
        "Location": {
            "description": "status URL of the run",
            "schema": {"type": "string"},
        }
    }
    return {**_json(_ref("Run"), description), "headers": location}


def _errors(*codes: int) -> dict[str, Any]:
    responses = {str(c): _json(_ref("Error"), _ERROR_TEXT[c]) for c in codes}
    if "401" in responses:
        responses["401"]["headers"] = {
            "WWW-Authenticate": {
                "description": "the scheme to use: Bearer",
                "schema": {"type": "string"},
            }
        }
    return responses


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": schema}},
    }


# -- paths --------------------------------------------------------------------------


def _task_list_paths() -> dict[str, Any]:
    return {
        "/api/tasks": {
            "get": {
                "operationId": "list_tasks",
                "summary": "Task definitions",
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"type": "object"}}, "the tasks"
                    ),
                    **_errors(401),
                },
            }
        },
    }


def _run_paths() -> dict[str, Any]:
    """One run: read it (or wait for it to change), cancel it, its log, run it again."""
    return {
        "/api/runs/{run_id}": {
            "parameters": [RUN_ID_PARAMETER],
            "get": {
                "operationId": "get_run",
                "summary": "One run; with `wait`, as soon as it changes or finishes "
                "(a long poll: follow a run with no sleep loop)",
                "parameters": [p.openapi() for p in RUN_QUERY],
                "responses": {
                    "200": _json(_ref("Run"), "the run"),
                    **_errors(400, 401, 404, 503),
                },
            },
            "delete": {
                "operationId": "cancel_run",
                "summary": "Cancel a run",
                "responses": {
                    "202": _accepted("cancel requested"),
                    **_errors(400, 401, 403, 404, 409, 503),
                },
            },
        },
        "/api/runs/{run_id}/logs": {
            "parameters": [RUN_ID_PARAMETER],
            "get": {
                "operationId": "get_run_logs",
                "summary": "The lines the run's task logged (ctx.log), in order",
                "parameters": [p.openapi() for p in LOGS_QUERY],
                "responses": {
                    "200": _json(_ref("RunLog"), "the log lines"),
                    **_errors(400, 401, 404, 503),
                },
            },
        },
        "/api/runs/{run_id}/rerun": {
            "parameters": [RUN_ID_PARAMETER],
            "post": {
                "operationId": "rerun",
                "summary": "Start a new run of the same task with the same "
                "parameters (the same checks as a start)",
                "responses": {
                    "202": _accepted(),
                    **_errors(400, 401, 403, 404, 422, 429, 503),
                },
            },
        },
    }


def _run_list_paths() -> dict[str, Any]:
    page = {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Run")},
            "next": {"type": ["string", "null"]},
        },
    }
    return {
        "/api/runs": {
            "get": {
                "operationId": "list_runs",
                "summary": "Run history, newest first",
                "parameters": [p.openapi() for p in RUNS_QUERY],
                "responses": {
                    "200": _json(page, "a page of runs"),
                    **_errors(400, 401, 503),
                },
            }
        },
    }


def _data_paths() -> dict[str, Any]:
    row = {
        "type": "object",
        "required": ["id", "run_id", "created_at", "value", "category"],
    }
    page = {
        "type": "object",
        "required": ["total", "rows"],
        "properties": {
            "total": {"type": "integer"},
            "version": {"type": "integer"},
            "rows": {"type": "array", "items": row},
        },
    }
    return {
        "/api/data": {
            "get": {
                "operationId": "get_data",
                "summary": "A page of the generated data set",
                "parameters": [p.openapi() for p in DATA_QUERY],
                "responses": {
                    "200": _json(page, "a page of rows"),
                    **_errors(400, 401, 503),
                },
            }
        },
    }


def _schedule_list_paths() -> dict[str, Any]:
    listing = {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Schedule")}},
    }
    created = {
        "Location": {
            "description": "the schedule's URL",
            "schema": {"type": "string"},
        }
    }
    return {
        "/api/schedules": {
            "get": {
                "operationId": "list_schedules",
                "summary": "Every schedule, with its next fire times",
                "responses": {
                    "200": _json(listing, "the schedules"),
                    **_errors(401, 503),
                },
            },
            "post": {
                "operationId": "create_schedule",
                "summary": "Schedule a task (operators: tasks they may start)",
                "requestBody": _body(schedule_create_schema()),
                "responses": {
                    "201": {**_json(_ref("Schedule"), "created"), "headers": created},
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
        },
    }


def _schedule_paths() -> dict[str, Any]:
    """One schedule: read, change, delete, run now."""
    schedule = _ref("Schedule")
    return {
        "/api/schedules/{schedule_id}": {
            "parameters": [SCHEDULE_ID_PARAMETER],
            "get": {
                "operationId": "get_schedule",
                "summary": "One schedule",
                "responses": {
                    "200": _json(schedule, "the schedule"),
                    **_errors(401, 404),
                },
            },
            "patch": {
                "operationId": "update_schedule",
                "summary": "Change a schedule; giving every_s or cron replaces the "
                "other; enabled false pauses it",
                "requestBody": _body(SCHEDULE_PATCH),
                "responses": {
                    "200": _json(schedule, "the schedule as saved"),
                    **_errors(400, 401, 403, 404, 413, 415, 422, 503),
                },
            },
            "delete": {
                "operationId": "delete_schedule",
                "summary": "Delete a schedule (its runs stay in the history)",
                "responses": {
                    "204": {"description": "deleted"},
                    **_errors(401, 403, 404, 503),
                },
            },
        },
        "/api/schedules/{schedule_id}/run": {
            "parameters": [SCHEDULE_ID_PARAMETER],
            "post": {
                "operationId": "run_schedule",
                "summary": "Run now: a start by the caller with the schedule's "
                "parameters and id, paused or not",
                "responses": {
                    "202": _accepted(),
                    **_errors(401, 403, 404, 422, 429, 503),
                },
            },
        },
    }


def _probe_paths() -> dict[str, Any]:
    """This document and the health probes: open to anyone."""

    def probe(operation_id: str, summary: str, responses: dict) -> dict[str, Any]:
        get = {"operationId": operation_id, "summary": summary, "security": OPEN}
        return {"get": {**get, "responses": responses}}

    return {
        "/api/openapi.json": probe(
            "openapi",
            "This document",
            {"200": _json({"type": "object"}, "OpenAPI 3 document")},
        ),
        "/healthz": probe(
            "healthz", "Liveness", {"200": _json({"type": "object"}, "up")}
        ),
        "/readyz": probe(
            "readyz",
            "Readiness",
            {"200": _json({"type": "object"}, "ready"), **_errors(503)},
        ),
    }


def _start_paths(definition: TaskDefinition) -> dict[str, Any]:
    """Starting a run of one task: its parameters are the request body's schema."""
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
        },
        "description": "the same key again returns the first run; "
        "reused for another task or other parameters: 422",
    }
    return {
        f"/api/tasks/{definition.name}/runs": {
            "post": {
                "operationId": f"start_{definition.name}",
                "summary": f"Start {definition.name}: {definition.description}",
                "parameters": [key],
                "requestBody": _body(definition.schema(), required=False),
                "responses": {
                    "202": _accepted(),
                    **_errors(400, 401, 403, 413, 415, 422, 429, 503),
                },
            }
        }
    }
