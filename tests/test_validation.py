"""Bad input gets the contract's status and a message that names the field."""

from __future__ import annotations

import pytest


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    return response.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"rows": 0}, {"rows": "must be at least 1"}),
        ({"rows": 100_001}, {"rows": "must be at most 100000"}),
        ({"rows": "5"}, {"rows": "must be an integer"}),
        ({"rows": True}, {"rows": "must be an integer"}),
        ({"rows": 2.5}, {"rows": "must be an integer"}),
        ({"seconds": -1}, {"seconds": "must be at least 0"}),
        ({"seconds": 601}, {"seconds": "must be at most 600"}),
        ({"seconds": None}, {"seconds": "is required"}),
        (
            {"rows": 1, "colour": "red"},
            {"colour": "is not a parameter of generate_data (expected: rows, seconds)"},
        ),
    ],
)
def test_invalid_parameters_are_422_with_field_messages(client, body, fields):
    error = error_of(client.post("/api/tasks/generate_data/runs", json=body), 422)
    assert error["code"] == "invalid_parameters"
    assert error["fields"] == fields
    # Nothing was started.
    assert client.get("/api/runs").get_json()["items"] == []


def test_bounds_follow_configuration(make_app):
    client = make_app(MAX_ROWS_PER_RUN=50).test_client()
    error = error_of(
        client.post("/api/tasks/generate_data/runs", json={"rows": 51}), 422
    )
    assert error["fields"] == {"rows": "must be at most 50"}


def test_choices_are_checked(client):
    response = client.post("/api/tasks/summarize_data/runs", json={"category": "omega"})
    error = error_of(response, 422)
    assert error["fields"] == {"category": "must be one of alpha, beta, gamma, delta"}


def test_malformed_json_is_400(client):
    response = client.post(
        "/api/tasks/generate_data/runs",
        data="{rows: 1",
        content_type="application/json",
    )
    assert error_of(response, 400)["code"] == "malformed_json"


def test_json_that_is_not_an_object_is_400(client):
    response = client.post("/api/tasks/generate_data/runs", json=[1, 2])
    assert error_of(response, 400)["code"] == "not_an_object"


def test_non_json_body_is_415(client):
    response = client.post("/api/tasks/generate_data/runs", data={"rows": "1"})
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_huge_body_is_413(client):
    body = '{"rows": 1, "pad": "' + "x" * 100_000 + '"}'
    response = client.post(
        "/api/tasks/generate_data/runs", data=body, content_type="application/json"
    )
    assert error_of(response, 413)["code"] == "request_entity_too_large"


def test_unknown_task_is_404(client):
    response = client.post("/api/tasks/make_coffee/runs", json={})
    assert error_of(response, 404)["message"] == "no task is named 'make_coffee'"


def test_flask_errors_are_json_too(client):
    assert error_of(client.get("/api/nowhere"), 404)["code"] == "not_found"
    response = client.put("/api/tasks")
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_bad_idempotency_key_is_400(client):
    response = client.post(
        "/api/tasks/generate_data/runs", json={}, headers={"Idempotency-Key": "k" * 201}
    )
    assert "Idempotency-Key" in error_of(response, 400)["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=-1", "offset"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("sort=colour", "sort"),
        ("order=up", "order"),
        ("category=omega", "category"),
        ("colour=red", "colour"),
    ],
)
def test_bad_data_paging_is_400_naming_the_parameter(client, query, field):
    error = error_of(client.get(f"/api/data?{query}"), 400)
    assert field in error["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=DONE", "state"),
        ("source=fax", "source"),
        ("task=nope", "task"),
        ("limit=-5", "limit"),
        ("cursor=%%%", "cursor"),
    ],
)
def test_bad_history_filters_are_400(client, query, field):
    assert field in error_of(client.get(f"/api/runs?{query}"), 400)["fields"]


def test_unexpected_errors_are_json_500_without_a_trace(app, client):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internals")

    error = error_of(client.get("/api/boom"), 500)
    assert error == {
        "code": "internal_error",
        "message": "something went wrong on our side",
        "fields": {},
    }


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("limit=1_0", {"limit": "must be an integer"}),
        ("limit=\u0661\u0660", {"limit": "must be an integer"}),  # Arabic-Indic 10
        ("limit=%2B5", {"limit": "must be an integer"}),
        ("limit=5&limit=7", {"limit": "must be given at most once"}),
        ("state=SUCCESS&state=FAILURE", {"state": "must be given at most once"}),
        ("colour=red", {"colour": "is not a known query parameter"}),
    ],
)
def test_query_numbers_are_ascii_digits_and_given_once(client, query, fields):
    error = error_of(client.get(f"/api/runs?{query}"), 400)
    assert error["code"] == "bad_parameter" and error["fields"] == fields


def test_data_query_is_parsed_from_the_same_declarations(client):
    assert error_of(client.get("/api/data?offset=1_000"), 400)["fields"] == {
        "offset": "must be an integer"
    }
    assert client.get("/api/data?offset=0&limit=1000").status_code == 200


def test_the_openapi_document_states_the_parsed_limits(client):
    """The document is built from the declarations the views parse with."""
    paths = client.get("/api/openapi.json").get_json()["paths"]
    limit = {p["name"]: p["schema"] for p in paths["/api/runs"]["get"]["parameters"]}[
        "limit"
    ]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 200, 50)
    assert error_of(client.get("/api/runs?limit=201"), 400)["fields"] == {
        "limit": "must be between 1 and 200"
    }


def test_an_idempotency_key_names_one_request(client):
    def start(task, body):
        return client.post(
            f"/api/tasks/{task}/runs", json=body, headers={"Idempotency-Key": "k-1"}
        )

    first = start("generate_data", {"rows": 2, "seconds": 0})
    assert first.status_code == 202
    again = start("generate_data", {"rows": 2, "seconds": 0})
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    for task, body in (
        ("generate_data", {"rows": 3, "seconds": 0}),
        ("summarize_data", {}),
    ):
        error = error_of(start(task, body), 422)
        assert error["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in error["fields"]
    assert len(client.get("/api/runs").get_json()["items"]) == 1
