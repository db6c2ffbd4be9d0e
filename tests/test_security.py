"""Security settings asserted on the real app, Redis and Celery: secret key, cookie
flags, headers, CSP, the shared start rate limit, per-task limits, sizes."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.metadata import version

import pytest
import redis
from flask import session

from myapp import create_app
from tests.support import RedisServer, as_user


def start(client, task="generate_data", **body):
    return client.post(f"/api/tasks/{task}/runs", json=body or {"seconds": 0})


def test_secret_key_is_required_outside_development(make_app, tmp_path):
    with pytest.raises(RuntimeError, match="SECRET_KEY is required"):
        make_app(APP_ENV="production", SECRET_KEY=None)
    # development makes a random one, never a fixed default, and keeps it
    one = make_app(SECRET_KEY=None).config["SECRET_KEY"]
    other = make_app(SECRET_KEY=None, INSTANCE_PATH=str(tmp_path / "other"))
    assert one != other.config["SECRET_KEY"] and len(one) >= 32


@pytest.mark.parametrize("env, secure", [("production", True), ("development", False)])
def test_session_cookie_flags(make_app, env, secure):
    app = make_app(APP_ENV=env, ALLOWED_HOSTS="localhost")

    @app.get("/_set-session")
    def _set_session():
        session["seen"] = True
        return "ok"

    cookie = app.test_client().get("/_set-session").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_security_headers_on_pages_and_api(make_app):
    app = make_app(APP_ENV="production", ALLOWED_HOSTS="localhost")
    for path in ("/api/tasks", "/healthz", "/api/runs/nope"):
        headers = app.test_client().get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp


def test_dash_pages_get_a_csp_that_allows_exactly_dash_inline_scripts(make_app):
    app = make_app()
    if "dash" not in app.extensions:  # before the Dash pages are merged: a minimal one
        import dash
        from dash import html

        dash_app = dash.Dash(__name__, server=app, url_base_pathname="/dash/")
        dash_app.layout = html.Div("hello", id="hello")
        app.extensions["dash"] = dash_app
    response = app.test_client().get("/dash/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1).split()
    # Scripts inside comments (Dash's IE-only warning) never run in a browser.
    html_text = re.sub(r"<!--.*?-->", "", response.get_data(as_text=True), flags=re.S)
    inline = re.findall(
        r"<script(?![^>]*\bsrc=)([^>]*)>(.*?)</script>", html_text, re.S
    )
    executable = [body for attrs, body in inline if "application/json" not in attrs]
    assert executable, "Dash renders its start-up script inline"
    for body in executable:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src
    assert "'unsafe-inline'" not in script_src
    # The API beside it keeps the strict policy.
    assert (
        "unsafe"
        not in app.test_client().get("/api/tasks").headers["Content-Security-Policy"]
    )


def test_start_rate_limit_is_shared_in_redis_and_only_counts_starts(
    make_app, redis_server
):
    app = make_app(START_RATE_LIMIT="3/minute")
    client = app.test_client()
    assert [start(client).status_code for _ in range(3)] == [202, 202, 202]
    # A second web process (another app on the same Redis) sees the same count.
    other = make_app(START_RATE_LIMIT="3/minute").test_client()
    refused = start(other)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "too_many_requests"
    assert "Retry-After" in refused.headers
    keys = redis.Redis.from_url(redis_server.url).keys("myapp:limits*")
    assert keys
    # Reading is never throttled: status polls, history, data pages, Dash updates.
    for _ in range(10):
        assert client.get("/api/runs").status_code == 200
        assert client.get("/api/data").status_code == 200
        assert client.post("/dash/_dash-update-component").status_code != 429


def test_active_runs_per_task_are_bounded(make_app):
    client = make_app(MAX_ACTIVE_RUNS_PER_TASK=2).test_client()
    assert [start(client).status_code for _ in range(2)] == [202, 202]
    refused = start(client)
    assert refused.status_code == 429
    assert "generate_data" in refused.get_json()["error"]["message"]
    assert start(client, "summarize_data", category="alpha").status_code == 202


def test_body_and_page_sizes_are_bounded(client):
    big = client.post(
        "/api/tasks/generate_data/runs",
        data=b'{"rows": 1, "pad": "' + b"x" * 70_000 + b'"}',
        content_type="application/json",
    )
    assert big.status_code == 413 and big.is_json
    assert client.get("/api/data?limit=1001").status_code == 400
    assert client.get("/api/runs?limit=201").status_code == 400
    rows = client.post("/api/tasks/generate_data/runs", json={"rows": 100_001})
    assert rows.status_code == 422 and "rows" in rows.get_json()["error"]["fields"]


def test_celery_accepts_only_json_and_limits_every_task(app):
    celery_app = app.extensions["celery"]
    conf = celery_app.conf
    assert list(conf.accept_content) == ["json"]
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    ours = [t for name, t in celery_app.tasks.items() if not name.startswith("celery.")]
    assert {"generate_data", "myapp.reap_runs", "myapp.dispatch_pending"} <= {
        t.name for t in ours
    }
    for task in ours:
        hard = task.time_limit or conf.task_time_limit
        soft = task.soft_time_limit or conf.task_soft_time_limit
        assert hard and soft and soft < hard, task.name
    # Redelivery of an unacked message must never come while it may still run.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    beat = {entry["task"] for entry in conf.beat_schedule.values()}
    assert {"myapp.reap_runs", "myapp.dispatch_pending"} <= beat


def test_shipped_redis_is_durable_and_local(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    try:
        config = server.client().config_get("*")
    finally:
        server.stop()
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["bind"].split() == ["127.0.0.1"]


def test_dash_signs_background_callback_handles():
    major, minor, patch = (int(x) for x in version("dash").split(".")[:3])
    assert (major, minor, patch) >= (4, 4, 1)


def test_forms_need_a_csrf_token(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    if "views.create_run" not in app.view_functions:
        pytest.skip("the HTML forms are not part of this build yet")
    response = app.test_client().post(
        "/tasks/generate_data/runs", data={"rows": "1", "seconds": "0"}
    )
    assert response.status_code == 400


def test_factory_refuses_default_secret_in_production_env(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app()


def test_one_rate_limit_counts_every_kind_of_start(make_app, make_user):
    """API, form and Dash starts of one user share START_RATE_LIMIT: once the API
    has answered 429, a Dash start is refused too (both modes)."""
    from myapp.dashboard import core

    app = make_app(START_RATE_LIMIT="2/minute", WTF_CSRF_ENABLED=False)
    client = app.test_client()
    assert start(client).status_code == 202
    form = client.post("/tasks/generate_data/runs", data={"rows": "1"})
    assert form.status_code == 202
    assert start(client).status_code == 429
    with as_user(app):
        for mode in ("queued", "background"):
            started = core.start({"rows": "1"}, mode=mode)
            assert not started.ok and "too many starts" in started.message
    # Another user, from the same address, has their own count.
    _, token = make_user("operator")
    with as_user(app, token):
        assert core.start({"rows": "1"}, mode="queued").ok
    assert start(app.test_client(token=token)).status_code == 202
