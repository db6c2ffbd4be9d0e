"""Every operation of /api/openapi.json, fuzzed: no 5xx, nothing the document denies.

Schemathesis generates valid and invalid requests from the document the app serves
and checks each response against it (status code, content type, headers, body
schema). Each operation is one test, bounded to 30 examples. Requests carry the
tests' admin token; schemathesis also sends each secured operation without it and
with a made-up one, and expects a refusal.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from myapp.tasks import tasks_init_app
from myapp.web.openapi import openapi_document


def _operation_labels() -> list[str]:
    """ "METHOD /path" of each operation; the paths do not depend on configuration."""
    bare = Flask(__name__)
    bare.config["MAX_ROWS_PER_RUN"] = 1
    tasks_init_app(bare)  # the built-in tasks: the paths the document names
    with bare.app_context():
        paths = openapi_document()["paths"]
    methods = ("get", "post", "put", "patch", "delete")
    return [
        f"{m.upper()} {p}" for p, item in paths.items() for m in item if m in methods
    ]


# The test loads the document from the running app, so it fuzzes what is served.
OPERATIONS = _operation_labels()


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_matches_its_document(make_app, label):
    app = make_app()
    auth = {"Authorization": f"Bearer {app.test_client_class.default_token}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"

    @given(case=operation.as_strategy())
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case):
        excluded = []
        if case.query and "cursor" in case.query:
            # A cursor is an opaque token the API hands out: a random string that
            # fits `type: string` is rightly refused (400, documented).
            excluded.append(positive_data_acceptance)
        if case.headers and "Idempotency-Key" in case.headers:
            # Generated keys repeat across examples with other parameters: reusing
            # a key for another request is rightly refused (422, documented).
            excluded.append(positive_data_acceptance)
        if label in ("POST /api/schedules", "PATCH /api/schedules/{schedule_id}"):
            # A schedule's cron text, zone and task parameters are checked when it
            # is saved; JSON Schema cannot say which texts are valid cron (422,
            # documented, naming the field).
            excluded.append(positive_data_acceptance)
        case.call_and_validate(headers=auth, excluded_checks=excluded)

    check()
