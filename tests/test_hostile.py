"""Hostile and careless input through the Flask app (real Redis and database): no
input gets a 5xx or a traceback in the log, a chunked body obeys the body limit,
and no redirect names a host the operator did not list.

The same limits through gunicorn and real sockets: tests/test_slow_clients.py.
"""

from __future__ import annotations

import base64
import io
import logging

import pytest

from myapp import create_app
from myapp.web.guards import MAX_JSON_DEPTH, check_json_depth, local_location

API_START = "/api/tasks/summarize_data/runs"
FORM_START = "/tasks/generate_data/runs"
JSON = "application/json"


@pytest.fixture
def client(make_app):
    # The forms' CSRF check is its own test (test_security); here every form input
    # must reach the form.
    return make_app(WTF_CSRF_ENABLED=False).test_client()


@pytest.fixture
def log(caplog):
    """Every log record of the request under test."""
    caplog.set_level(logging.INFO)
    return caplog


def assert_quiet_refusal(response, log, status: int | None = None) -> None:
    """A 4xx, and at most one log line, without a traceback."""
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    if status is not None:
        assert response.status_code == status
    assert not [r for r in log.records if r.exc_info], log.text
    assert len(log.records) <= 1, log.text


# -- JSON nested deeper than any caller needs ------------------------------------

DEEP = {
    "5,000 arrays": "[" * 5000 + "]" * 5000,
    "3,000 objects": '{"a":' * 3000 + "1" + "}" * 3000,
    "arrays in an object": '{"category": ' + "[" * 5000 + "]" * 5000 + "}",
}


@pytest.mark.parametrize("name", DEEP)
def test_deep_json_is_400_before_the_parser_recurses(client, log, name):
    response = client.post(API_START, data=DEEP[name], content_type=JSON)
    assert_quiet_refusal(response, log, 400)
    error = response.get_json()["error"]
    assert error["code"] == "malformed_json"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in error["message"]


def test_deep_json_to_dash_is_400_too(client, log):
    response = client.post(
        "/dash/_dash-update-component",
        data=DEEP["5,000 arrays"],
        content_type=JSON,
        headers={"Accept": JSON},
    )
    assert_quiet_refusal(response, log, 400)


def test_the_depth_check_counts_brackets_outside_strings_only():
    check_json_depth('{"a": "' + "[" * 1000 + '"}')  # inside a string: fine
    check_json_depth("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    with pytest.raises(ValueError, match="nested deeper"):
        check_json_depth("[" * (MAX_JSON_DEPTH + 1))
    # An escaped quote does not end the string.
    check_json_depth(r'["\"' + "{" * 500 + '"]')
    # A string that never closes runs to the end (the parser refuses it there), in
    # one pass: rescanning it from each of its quotes took ~40 s for 64 KiB.
    check_json_depth("[" * 10 + '"' + '\\"' * 30000 + "[" * 500)


def test_json_at_a_reasonable_depth_still_parses(client):
    nested = '{"category": null, "x": ' + "[" * 50 + "]" * 50 + "}"
    response = client.post(API_START, data=nested, content_type=JSON)
    # Parsed, then refused for what it says (x is not a parameter), not its shape.
    assert response.status_code == 422
    assert "x" in response.get_json()["error"]["fields"]


# -- cursors that are not ours ------------------------------------------------------

NESTED_CURSOR = base64.urlsafe_b64encode(b"[" * 1500).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/api/runs", "/runs"])
@pytest.mark.parametrize(
    "cursor",
    [NESTED_CURSOR, "%ff%fe", "====", "a" * 201, base64.b64encode(b"\xff[").decode()],
)
def test_a_cursor_we_did_not_hand_out_is_400(client, log, path, cursor):
    response = client.get(f"{path}?cursor={cursor}")
    assert_quiet_refusal(response, log, 400)


# -- chunked bodies -----------------------------------------------------------------


def post_chunked(client, path: str, body: bytes):
    """What a server that decodes chunked bodies hands the app: no Content-Length,
    the stream terminated by the server (wsgi.input_terminated)."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )


def test_a_chunked_body_past_the_limit_is_413_not_cut(client, log):
    # Valid JSON for the first 64 KiB: cut at the limit, it would start a run.
    body = b'{"category": null' + b" " * (80 * 1024) + b"}"
    response = post_chunked(client, API_START, body)
    assert_quiet_refusal(response, log, 413)
    assert response.get_json()["error"] == {
        "code": "request_entity_too_large",
        "message": "the request body is larger than 65536 bytes",
        "fields": {},
    }


def test_a_chunked_body_within_the_limit_is_read_whole(client):
    body = b'{"category": null' + b" " * (60 * 1024) + b"}"
    response = post_chunked(client, API_START, body)
    assert response.status_code == 202, response.get_json()


def test_a_chunked_form_past_the_limit_is_413(client, log):
    response = client.post(
        FORM_START,
        input_stream=io.BytesIO(b"rows=1&seconds=0&pad=" + b"x" * (80 * 1024)),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert_quiet_refusal(response, log, 413)


# -- everything else a client can send ----------------------------------------------

HOSTILE = [
    # path parameters of odd lengths and encodings
    ("GET", "/api/runs/" + "a" * 10000, {}),
    ("GET", "/api/runs/%00", {}),
    ("GET", "/api/runs/%ff%fe", {}),
    ("GET", "/api/runs/..%2f..%2fetc%2fpasswd", {}),
    ("GET", "/runs/%E2%80%AE", {}),
    ("GET", "/runs/" + "a" * 5000, {}),
    ("DELETE", "/api/runs/%00", {}),
    ("DELETE", "/api/runs/" + "a" * 3000, {}),
    ("POST", "/runs/%00/cancel", {}),
    ("POST", "/api/tasks/%ff/runs", {"json": {}}),
    ("POST", "/api/tasks/" + "x" * 5000 + "/runs", {"json": {}}),
    ("POST", "/tasks/%ff/runs", {"data": {"rows": "1"}}),
    ("GET", "/static/%2e%2e/%2e%2e/etc/passwd", {}),
    ("GET", "/%ff", {}),
    # query parameters
    ("GET", "/api/data?offset=%ff", {}),
    ("GET", "/api/data?limit=0x10", {}),
    ("GET", "/api/data?sort=%ff&sort=value", {}),
    ("GET", "/api/data?run_id=" + "r" * 100, {}),
    ("GET", "/api/runs?limit=99999999999999999999", {}),
    ("GET", "/api/runs?state=%00", {}),
    ("GET", "/runs?state=%ff", {}),
    # JSON bodies
    ("POST", API_START, {"data": "NaN", "content_type": JSON}),
    ("POST", API_START, {"data": "\x00", "content_type": JSON}),
    ("POST", API_START, {"data": b'{"category": "\xff\xfe"}', "content_type": JSON}),
    ("POST", API_START, {"data": '{"category": ["x"]}', "content_type": JSON}),
    ("POST", API_START, {"data": '{"\\ud800": 1}', "content_type": JSON}),
    ("POST", API_START, {"data": '{"k' + "k" * 100000 + '": 1}', "content_type": JSON}),
    ("POST", API_START, {"data": "{}", "content_type": "multipart/form-data"}),
    ("POST", API_START, {"data": "{}", "content_type": "text/plain"}),
    (
        "POST",
        "/api/tasks/generate_data/runs",
        {"data": '{"rows": ' + "9" * 5000 + "}", "content_type": JSON},
    ),
    (
        "POST",
        "/api/tasks/generate_data/runs",
        {"data": '{"rows": 1e999, "seconds": NaN}', "content_type": JSON},
    ),
    # headers
    ("POST", API_START, {"json": {}, "headers": {"Idempotency-Key": "k" * 10000}}),
    ("POST", API_START, {"json": {}, "headers": {"Idempotency-Key": ""}}),
    ("GET", "/runs", {"headers": {"Host": "a" * 300}}),
    ("GET", "/runs", {"headers": {"Host": "a..b", "Accept": "text/html"}}),
    ("POST", API_START, {"json": {}, "headers": {"Host": "x" * 64 + ".example"}}),
    # HTML forms
    ("POST", FORM_START, {"data": {"rows": "1" * 5000}}),
    ("POST", FORM_START, {"data": {"rows": "nan"}}),
    ("POST", FORM_START, {"data": {"seconds": "1e400"}}),
    ("POST", FORM_START, {"data": {"rows": "0x10"}}),
    ("POST", FORM_START, {"data": {"rows": "\x00"}}),
    ("POST", FORM_START, {"data": {"x" * 1000: "1"}}),
    ("POST", FORM_START, {"data": {"idempotency_key": "k" * 10000}}),
    ("POST", "/tasks/summarize_data/runs", {"data": {"category": "c" * 10000}}),
    # methods nobody serves
    ("PATCH", API_START, {}),
    ("TRACE", "/api/tasks", {}),
    ("FOO", "/", {}),
]


@pytest.mark.parametrize(
    "method, path, options",
    HOSTILE,
    ids=[f"{m} {p[:40]} {sorted(o)}" for m, p, o in HOSTILE],
)
def test_hostile_input_gets_a_4xx_and_at_most_one_quiet_log_line(
    client, log, method, path, options
):
    response = client.open(path, method=method, **options)
    assert_quiet_refusal(response, log)
    if path.startswith("/api/"):
        assert set(response.get_json()["error"]) == {"code", "message", "fields"}


# -- hosts --------------------------------------------------------------------------


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    with pytest.raises(RuntimeError, match="ALLOWED_HOSTS is required"):
        create_app(
            {
                "APP_ENV": "production",
                "SECRET_KEY": "s" * 32,
                "INSTANCE_PATH": str(tmp_path),
            }
        )


def test_allowed_hosts_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLOWED_HOSTS", " app.example.com, .example.org ,")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s" * 32})
    assert app.config["ALLOWED_HOSTS"] == "app.example.com,.example.org"
    assert app.config["TRUSTED_HOSTS"] == ["app.example.com", ".example.org"]


@pytest.fixture
def production(make_app):
    return make_app(
        APP_ENV="production",
        ALLOWED_HOSTS="app.example.com,.example.org",
        WTF_CSRF_ENABLED=False,
    ).test_client()


@pytest.mark.parametrize(
    "host", ["app.example.com", "app.example.com:8443", "eu.example.org"]
)
def test_allowed_hosts_are_served(production, host):
    assert production.get("/healthz", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "method, path, accept",
    [
        ("GET", "/healthz", JSON),
        ("GET", "/runs", "text/html"),
        ("GET", "/dash", "text/html"),
        ("POST", API_START, JSON),
        ("POST", FORM_START, "text/html"),
    ],
)
def test_other_hosts_get_400_json_and_nothing_else(
    production, log, method, path, accept
):
    response = production.open(
        path, method=method, headers={"Host": "evil.example", "Accept": accept}
    )
    assert_quiet_refusal(response, log, 400)
    assert response.get_json()["error"]["code"] == "bad_host"
    assert "Location" not in response.headers


def test_a_foreign_host_never_reaches_a_location_in_development(client):
    evil = {"Host": "evil.example"}
    # Werkzeug's slash redirect builds an absolute URL from the Host header.
    response = client.get("/dash", headers=evil)
    assert response.status_code == 308
    assert response.headers["Location"] == "/dash/"
    started = client.post(API_START, json={}, headers=evil)
    assert started.status_code == 202
    assert started.headers["Location"].startswith("/api/runs/")
    cancelled = client.post(
        f"/runs/{started.get_json()['id']}/cancel", headers=evil, follow_redirects=False
    )
    assert cancelled.status_code in (303, 409)
    assert "evil" not in cancelled.headers.get("Location", "")


@pytest.mark.parametrize(
    "location, local",
    [
        ("/dash/", "/dash/"),
        ("runs/1", "runs/1"),
        ("http://evil.example/dash/?a=1#x", "/dash/?a=1#x"),
        ("https://evil.example", "/"),
        ("//evil.example/x", "/x"),
        ("/\\evil.example/x", "/evil.example/x"),
        ("\\\\evil.example/x", "/evil.example/x"),
    ],
)
def test_locations_are_paths_on_this_site(location, local):
    assert local_location(location) == local
