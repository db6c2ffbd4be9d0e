"""The OpenAPI 3 document of the JSON API, built from the task definitions so the
parameter schemas are the ones the server validates with.

Every operation needs credentials (a bearer token, or the browser's session cookie
with the CSRF token in `X-CSRFToken` for POST and DELETE) except this document and
the health probes, which declare `security: []`."""

from __future__ import annotations

from typing import Any

from myapp.models import SOURCES, STATES
from myapp.tasks import task_registry
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

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "task",
        "params",
        "source",
        "state",
        "attempts",
        "created_at",
        "status_url",
    ],
    "properties": {
        "id": {"type": "string"},
        "task": {"type": "string"},
        "params": {"type": "object"},
        "source": {"type": "string", "enum": list(SOURCES)},
        "state": {"type": "string", "enum": list(STATES)},
        "progress": {
            "type": ["object", "null"],
            "properties": {
                "current": {"type": ["integer", "null"]},
                "total": {"type": ["integer", "null"]},
                "message": {"type": ["string", "null"]},
            },
        },
        "result": {},
        "error": {
            "type": ["object", "null"],
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "attempts": {"type": "integer", "minimum": 0},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "duration_s": {"type": ["number", "null"]},
        "status_url": {"type": "string"},
        "created_by": {
            "type": ["string", "null"],
            "description": "who started it; null for beat and external runs",
        },
        "cancelled_by": {"type": ["string", "null"]},
        "schedule_id": {
            "type": ["integer", "null"],
            "description": "the schedule that fired it, or that a user ran now",
        },
        "fire_at": {
            **_NULLABLE_TIME,
            "description": "the schedule's fire time this run stands for",
        },
    },
}

RUN_LOG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lines", "next", "dropped"],
    "properties": {
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["seq", "at", "level", "message"],
                "properties": {
                    "seq": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "level": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "next": {"type": "integer", "description": "the `after` for later lines"},
        "dropped": {"type": "integer", "description": "lines past the limit"},
    },
}

_SCHEDULE_FIELDS: dict[str, Any] = {
    "params": {
        "type": "object",
        "description": "the task's parameters, checked as a start checks them",
    },
    "every_s": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "seconds between fires (at least SCHEDULE_MIN_SECONDS, 10 "
        "by default); exactly one of every_s and cron",
    },
    "cron": {
        "type": ["string", "null"],
        "maxLength": 100,
        "description": "five cron fields (minute hour day month weekday)",
    },
    "timezone": {
        "type": "string",
        "description": "IANA time zone of the cron fields",
        "default": "UTC",
    },
    "enabled": {"type": "boolean", "default": True},
    "description": {"type": "string", "maxLength": 500},
}

SCHEDULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "task", "params", "enabled", "next_runs", "url"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "task": {"type": "string"},
        **_SCHEDULE_FIELDS,
        "paused_reason": {
            "type": ["string", "null"],
            "description": "why the app keeps it from firing (its task is gone, "
            "its creator may no longer start it); enabled is false then",
        },
        "describe": {"type": "string", "description": "when it fires, in words"},
        "created_by": {"type": ["string", "null"]},
        "updated_by": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "last_fire_at": _NULLABLE_TIME,
        "last_run_id": {"type": ["string", "null"]},
        "last_run_at": _NULLABLE_TIME,
        "next_runs": {
            "type": "array",
            "items": {"type": "string", "format": "date-time"},
            "description": "the next three fire times (UTC)",
        },
        "url": {"type": "string"},
    },
}


def _schedule_create() -> dict[str, Any]:
    """The body of a new schedule. What JSON Schema cannot say is checked when it
    is saved (422 naming the field): the cron text, the zone, the parameters of
    the chosen task, and that exactly one of every_s and cron is given."""
    return {
        "type": "object",
        "required": ["name", "task"],
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9._-]*$",
                "maxLength": 100,
            },
            "task": {"type": "string", "enum": list(task_registry())},
            **_SCHEDULE_FIELDS,
        },
    }


SCHEDULE_PATCH: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": _SCHEDULE_FIELDS,
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token: `flask --app wsgi users token NAME`",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "the browser's session after signing in at /login; POST and "
        "DELETE also need the CSRF token in the X-CSRFToken header",
    },
}
# Either scheme will do.
SECURED = [{"bearerAuth": []}, {"sessionCookie": []}]
OPEN: list[dict[str, list[str]]] = []

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
            },
        }
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    text = {
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
    responses = {str(c): _json(ref, text[c]) for c in codes}
    if "401" in responses:
        responses["401"]["headers"] = {
            "WWW-Authenticate": {
                "description": "the scheme to use: Bearer",
                "schema": {"type": "string"},
            }
        }
    return responses


def openapi_document() -> dict[str, Any]:
    run_ref = {"$ref": "#/components/schemas/Run"}
    location = {
        "Location": {
            "description": "status URL of the run",
            "schema": {"type": "string"},
        }
    }
    paths: dict[str, Any] = {
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
        "/api/runs/{run_id}": {
            "parameters": [RUN_ID_PARAMETER],
            "get": {
                "operationId": "get_run",
                "summary": "One run; with `wait`, as soon as it changes or finishes "
                "(a long poll: follow a run with no sleep loop)",
                "parameters": [p.openapi() for p in RUN_QUERY],
                "responses": {
                    "200": _json(run_ref, "the run"),
                    **_errors(400, 401, 404, 503),
                },
            },
            "delete": {
                "operationId": "cancel_run",
                "summary": "Cancel a run",
                "responses": {
                    "202": {**_json(run_ref, "cancel requested"), "headers": location},
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
                    "200": _json(
                        {"$ref": "#/components/schemas/RunLog"}, "the log lines"
                    ),
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
                    "202": {
                        **_json(run_ref, "accepted; poll the Location"),
                        "headers": location,
                    },
                    **_errors(400, 401, 403, 404, 422, 429, 503),
                },
            },
        },
        "/api/runs": {
            "get": {
                "operationId": "list_runs",
                "summary": "Run history, newest first",
                "parameters": [p.openapi() for p in RUNS_QUERY],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items", "next"],
                            "properties": {
                                "items": {"type": "array", "items": run_ref},
                                "next": {"type": ["string", "null"]},
                            },
                        },
                        "a page of runs",
                    ),
                    **_errors(400, 401, 503),
                },
            }
        },
        "/api/data": {
            "get": {
                "operationId": "get_data",
                "summary": "A page of the generated data set",
                "parameters": [p.openapi() for p in DATA_QUERY],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["total", "rows"],
                            "properties": {
                                "total": {"type": "integer"},
                                "version": {"type": "integer"},
                                "rows": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": [
                                            "id",
                                            "run_id",
                                            "created_at",
                                            "value",
                                            "category",
                                        ],
                                    },
                                },
                            },
                        },
                        "a page of rows",
                    ),
                    **_errors(400, 401, 503),
                },
            }
        },
        **_schedule_paths(run_ref, location),
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": OPEN,
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": OPEN,
                "responses": {"200": _json({"type": "object"}, "up")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                "security": OPEN,
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    **_errors(503),
                },
            }
        },
    }
    for definition in task_registry().values():
        paths[f"/api/tasks/{definition.name}/runs"] = {
            "post": {
                "operationId": f"start_{definition.name}",
                "summary": f"Start {definition.name}: {definition.description}",
                "parameters": [
                    {
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
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": definition.schema()}},
                },
                "responses": {
                    "202": {
                        **_json(run_ref, "accepted; poll the Location"),
                        "headers": location,
                    },
                    **_errors(400, 401, 403, 413, 415, 422, 429, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "myapp",
            "version": "1",
            "description": "Start long tasks, follow their runs, page their data.",
        },
        "paths": paths,
        "security": SECURED,
        "components": {
            "schemas": {
                "Run": RUN_SCHEMA,
                "RunLog": RUN_LOG_SCHEMA,
                "Schedule": SCHEDULE_SCHEMA,
                "Error": ERROR_SCHEMA,
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _schedule_paths(run_ref: dict[str, Any], location: dict[str, Any]) -> dict:
    ref = {"$ref": "#/components/schemas/Schedule"}
    one = [
        {
            "name": "schedule_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer"},
        }
    ]
    return {
        "/api/schedules": {
            "get": {
                "operationId": "list_schedules",
                "summary": "Every schedule, with its next fire times",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": ref}},
                        },
                        "the schedules",
                    ),
                    **_errors(401, 503),
                },
            },
            "post": {
                "operationId": "create_schedule",
                "summary": "Schedule a task (operators: tasks they may start)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _schedule_create()}},
                },
                "responses": {
                    "201": {
                        **_json(ref, "created"),
                        "headers": {
                            "Location": {
                                "description": "the schedule's URL",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            },
        },
        "/api/schedules/{schedule_id}": {
            "parameters": one,
            "get": {
                "operationId": "get_schedule",
                "summary": "One schedule",
                "responses": {"200": _json(ref, "the schedule"), **_errors(401, 404)},
            },
            "patch": {
                "operationId": "update_schedule",
                "summary": "Change a schedule; giving every_s or cron replaces the "
                "other; enabled false pauses it",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": SCHEDULE_PATCH}},
                },
                "responses": {
                    "200": _json(ref, "the schedule as saved"),
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
            "parameters": one,
            "post": {
                "operationId": "run_schedule",
                "summary": "Run now: a start by the caller with the schedule's "
                "parameters and id, paused or not",
                "responses": {
                    "202": {
                        **_json(run_ref, "accepted; poll the Location"),
                        "headers": location,
                    },
                    **_errors(401, 403, 404, 422, 429, 503),
                },
            },
        },
    }
