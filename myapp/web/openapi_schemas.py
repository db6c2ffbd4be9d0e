"""The components of the OpenAPI document: the schemas of what the API sends and
takes, and its security schemes. Tables of data, long on purpose: each reads as
the JSON it describes."""

from __future__ import annotations

from typing import Any

from myapp.models import SOURCES, STATES
from myapp.tasks import task_registry

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


def schedule_create_schema() -> dict[str, Any]:
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


def components() -> dict[str, Any]:
    """The document's `components`: what `$ref: #/components/...` points at."""
    return {
        "schemas": {
            "Run": RUN_SCHEMA,
            "RunLog": RUN_LOG_SCHEMA,
            "Schedule": SCHEDULE_SCHEMA,
            "Error": ERROR_SCHEMA,
        },
        "securitySchemes": SECURITY_SCHEMES,
    }
