"""Who may do what: sign-in, sessions, tokens and roles on every surface, against the
real app, Redis and database. (Dash in a browser: tests/test_auth_browser.py.)"""

from __future__ import annotations

import logging
import re
from html import unescape

import pytest
import redis
from sqlalchemy import select

from myapp import users
from myapp.dashboard import core
from myapp.extensions import db
from myapp.models import ApiToken, Run, User
from myapp.web.auth import safe_next
from tests.support import as_user, pending_run, wait_for_state

PASSWORD = "a long enough password"


def start(client, task="generate_data", body=None, **kwargs):
    return client.post(f"/api/tasks/{task}/runs", json=body or {"seconds": 0}, **kwargs)


def csrf_of(page: str) -> str:
    return unescape(re.search(r'name="csrf_token" value="([^"]+)"', page).group(1))


def sign_in(client, name: str, password: str = PASSWORD, next_: str | None = None):
    """POST the /login form as a browser does (its CSRF token first)."""
    page = client.get("/login").get_data(as_text=True)
    data = {"username": name, "password": password, "csrf_token": csrf_of(page)}
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data)


@pytest.fixture
def browser_client(app, make_user):
    """A session-only client (no token) signed in as an operator with a password."""
    name, _ = make_user("operator", password=PASSWORD)
    client = app.test_client(token=None)
    assert sign_in(client, name).status_code == 303
    client.user_name = name
    return client


# -- the role matrix on the API --------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "generate", "prune"),
    [("viewer", 403, 403), ("operator", 202, 403), ("admin", 202, 202)],
)
def test_api_starts_follow_the_task_definition_role(
    app, make_user, role, generate, prune
):
    name, token = make_user(role)
    client = app.test_client(token=token)
    response = start(client)
    assert response.status_code == generate
    if generate == 403:
        error = response.get_json()["error"]
        assert error["code"] == "forbidden"
        assert "needs the operator role" in error["message"]
    else:
        assert response.get_json()["created_by"] == name
    response = start(client, "prune_runs", {"older_than_days": 1})
    assert response.status_code == prune
    # Everyone reads everything.
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/tasks").get_json()[2]["role"] == "admin"


def test_a_viewer_learns_nothing_about_parameters_it_may_not_use(app, make_user):
    _, token = make_user("viewer")
    response = start(app.test_client(token=token), body={"rows": -5})
    assert response.status_code == 403  # refused before validation


def test_operators_cancel_their_own_runs_and_admins_any(app, make_user):
    ada, ada_token = make_user("operator")
    bob, bob_token = make_user("operator")
    _, viewer_token = make_user("viewer")
    ada_client = app.test_client(token=ada_token)
    bob_client = app.test_client(token=bob_token)
    admin = app.test_client()

    adas = start(ada_client).get_json()
    for other in (bob_client, app.test_client(token=viewer_token)):
        refused = other.delete(adas["status_url"])
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "forbidden"
    cancelled = ada_client.delete(adas["status_url"])
    assert cancelled.status_code == 202
    assert cancelled.get_json()["cancelled_by"] == ada

    bobs = start(bob_client).get_json()
    body = admin.delete(bobs["status_url"]).get_json()
    assert body["state"] == "REVOKED" and body["cancelled_by"] == "admin"
    assert body["created_by"] == bob
    # A run nobody started (beat, another Celery client): admins only.
    with app.app_context():
        beat = pending_run("generate_data", {}, source="beat").id
    assert ada_client.delete(f"/api/runs/{beat}").status_code == 403
    assert admin.delete(f"/api/runs/{beat}").status_code == 202


def test_rerun_starts_the_same_task_with_the_same_parameters(app, make_user):
    name, token = make_user("operator")
    operator = app.test_client(token=token)
    first = app.test_client().post(
        "/api/tasks/generate_data/runs", json={"rows": 3, "seconds": 0.5}
    )
    response = operator.post(f"/api/runs/{first.get_json()['id']}/rerun")
    assert response.status_code == 202
    again = response.get_json()
    assert response.headers["Location"] == again["status_url"]
    assert again["id"] != first.get_json()["id"]
    assert (again["task"], again["params"]) == (
        "generate_data",
        {"rows": 3, "seconds": 0.5},
    )
    assert (again["source"], again["created_by"]) == ("api", name)

    prune = start(app.test_client(), "prune_runs", {"older_than_days": 5}).get_json()
    assert operator.post(f"/api/runs/{prune['id']}/rerun").status_code == 403
    assert operator.post("/api/runs/nope/rerun").status_code == 404
    _, viewer = make_user("viewer")
    refused = app.test_client(token=viewer).post(f"/api/runs/{again['id']}/rerun")
    assert refused.status_code == 403


def test_rerun_counts_against_the_start_rate_limit(make_app, make_user):
    app = make_app(START_RATE_LIMIT="2/minute")
    client = app.test_client()
    run = start(client).get_json()
    assert client.post(f"/api/runs/{run['id']}/rerun").status_code == 202
    refused = client.post(f"/api/runs/{run['id']}/rerun")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    # Per user: another user still starts.
    _, token = make_user("operator")
    assert client.post(f"/api/runs/{run['id']}/rerun").status_code == 429
    other = app.test_client(token=token).post(f"/api/runs/{run['id']}/rerun")
    assert other.status_code == 202


def test_runs_filter_on_created_by(app, make_user):
    ada, token = make_user("operator")
    start(app.test_client(token=token))
    start(app.test_client())
    items = app.test_client().get(f"/api/runs?created_by={ada}").get_json()["items"]
    assert [r["created_by"] for r in items] == [ada]
    nobody = app.test_client().get("/api/runs?created_by=nobody").get_json()
    assert nobody["items"] == []
    too_long = app.test_client().get("/api/runs?created_by=" + "x" * 65)
    assert too_long.status_code == 400
    assert "created_by" in too_long.get_json()["error"]["fields"]


# -- anonymous callers -----------------------------------------------------------------


OPEN = {"/healthz", "/readyz", "/login", "/api/openapi.json"}


def concrete(rule) -> str:
    """A real path for a URL rule (every argument filled in, a number where the
    rule takes an int)."""
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<int:{name}>", "1", path)
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", "x", path)
    return path


def test_every_route_but_the_open_ones_refuses_anonymous_callers(app):
    anonymous = app.test_client(token=None)
    seen = 0
    for rule in app.url_map.iter_rules():
        path = concrete(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = anonymous.open(path, method=method)
            static = rule.endpoint == "static" or "_dash-component-suites" in path
            static = static or rule.endpoint.endswith("assets.static")
            static = static or path.endswith("_favicon.ico")
            if path in OPEN or static:
                assert response.status_code not in (302, 401), (method, path)
                continue
            seen += 1
            # /api/docs is a page for people: sign in first, like the others.
            machine = path.startswith("/api/") and path != "/api/docs"
            machine = machine or path == "/metrics"
            if machine or "/_dash-" in path or "_reload" in path:
                assert response.status_code == 401, (method, path)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert response.get_json()["error"]["code"] == "unauthorized"
            else:
                assert response.status_code == 302, (method, path)
                assert response.headers["Location"].startswith("/login?next=")
    assert seen >= 20  # the API, the pages, Dash's routes and pages
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/api/openapi.json").status_code == 200


def test_a_page_sends_an_anonymous_caller_to_sign_in_and_back(app, make_user):
    anonymous = app.test_client(token=None)
    response = anonymous.get("/runs?state=FAILURE")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/runs?state%3DFAILURE"
    name, _ = make_user("viewer", password=PASSWORD)
    signed_in = sign_in(anonymous, name, next_="/runs?state=FAILURE")
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == "/runs?state=FAILURE"
    assert anonymous.get("/runs?state=FAILURE").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\nSet-Cookie: x",
        "/ok\r\nSet-Cookie: x",
        "javascript:alert(1)",
        "evil.example",
        "",
    ],
)
def test_next_never_leaves_the_site(app, make_user, target):
    assert safe_next(target) == "/"
    name, _ = make_user("viewer", password=PASSWORD)
    response = sign_in(app.test_client(token=None), name, next_=target)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))


def test_next_keeps_a_local_path():
    assert safe_next("/dash/history") == "/dash/history"
    # Encoded, a line break is only part of a path on this site.
    assert safe_next("/%0d%0aSet-Cookie:x") == "/%0d%0aSet-Cookie:x"
    assert safe_next("/runs?task=prune_runs&state=FAILURE") == (
        "/runs?task=prune_runs&state=FAILURE"
    )


# -- signing in ------------------------------------------------------------------------


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(app, make_user):
    name, _ = make_user("operator", password=PASSWORD)
    wrong = sign_in(app.test_client(token=None), name, "not the password")
    unknown = sign_in(app.test_client(token=None), "nobody", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong user name or password." in response.get_data(as_text=True)
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]
    strip = re.compile(r'value="[^"]*"')  # the CSRF token and the name typed differ
    assert strip.sub("", wrong.get_data(as_text=True)) == strip.sub(
        "", unknown.get_data(as_text=True)
    )


def test_a_disabled_user_cannot_sign_in(app, make_user, runner):
    name, _ = make_user("admin", password=PASSWORD)
    runner.invoke(args=["users", "disable", name])
    assert sign_in(app.test_client(token=None), name).status_code == 401
    runner.invoke(args=["users", "enable", name])
    assert sign_in(app.test_client(token=None), name).status_code == 303


def test_the_login_form_needs_its_csrf_token(app, make_user):
    name, _ = make_user("viewer", password=PASSWORD)
    client = app.test_client(token=None)
    client.get("/login")
    response = client.post("/login", data={"username": name, "password": PASSWORD})
    assert response.status_code == 400


def test_login_attempts_are_throttled_per_address_and_per_name(
    make_app, make_user, redis_server
):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    name, _ = make_user("viewer", password=PASSWORD)
    attempts = [
        sign_in(app.test_client(token=None), name, "wrong").status_code
        for _ in range(3)
    ]
    assert attempts == [401, 401, 401]
    refused = sign_in(app.test_client(token=None), name)  # even the right password
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many sign-in attempts" in refused.get_data(as_text=True)
    # Per user name: from another address the same name is still refused...
    other_address = app.test_client(token=None)
    other_address.environ_base["REMOTE_ADDR"] = "10.0.0.7"
    assert sign_in(other_address, name).status_code == 429
    # ...and per address: this one is refused for any name.
    other, _ = make_user("viewer", password=PASSWORD)
    assert sign_in(app.test_client(token=None), other).status_code == 429
    fresh = app.test_client(token=None)
    fresh.environ_base["REMOTE_ADDR"] = "10.0.0.8"
    assert sign_in(fresh, other).status_code == 303
    # The count lives in Redis (every web process shares it), keyed by a hash of
    # the name, never the name or anything typed.
    keys = redis.Redis.from_url(redis_server.url).keys("myapp:limits*login*")
    assert keys and not any(name.encode() in key for key in keys)


def test_a_session_works_on_the_api_with_the_csrf_token(app, browser_client, make_user):
    page = browser_client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert browser_client.get("/api/runs").status_code == 200
    refused = start(browser_client)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    accepted = start(browser_client, headers={"X-CSRFToken": token})
    assert accepted.status_code == 202
    run = accepted.get_json()
    assert run["created_by"] == browser_client.user_name
    assert browser_client.delete(run["status_url"]).status_code == 400
    cancel = browser_client.delete(run["status_url"], headers={"X-CSRFToken": token})
    assert cancel.status_code == 202
    # Another user's session does not accept this session's token.
    other_name, _ = make_user("operator", password=PASSWORD)
    other = app.test_client(token=None)
    sign_in(other, other_name)
    assert start(other, headers={"X-CSRFToken": token}).status_code == 400
    # An anonymous caller is refused before any token is looked at.
    assert start(app.test_client(token=None)).status_code == 401


def test_logout_ends_the_session(browser_client):
    page = browser_client.get("/").get_data(as_text=True)
    assert browser_client.user_name in page
    response = browser_client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert browser_client.get("/").status_code == 302
    assert browser_client.get("/api/runs").status_code == 401
    assert browser_client.get("/logout").status_code == 405


# -- revocation and disabling, effective at the next request ---------------------------


def test_a_revoked_token_stops_at_the_next_request(app, make_user, runner):
    name, token = make_user("operator")
    client = app.test_client(token=token)
    assert client.get("/api/runs").status_code == 200
    result = runner.invoke(args=["users", "revoke-token", name, "--label", "tests"])
    assert result.exit_code == 0 and "revoked 1 token" in result.output
    refused = client.get("/api/runs")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_disabling_a_user_ends_their_sessions_and_tokens(app, make_user, runner):
    name, token = make_user("operator", password=PASSWORD)
    browser = app.test_client(token=None)
    assert sign_in(browser, name).status_code == 303
    api = app.test_client(token=token)
    assert (
        browser.get("/").status_code == 200 and api.get("/api/runs").status_code == 200
    )

    assert runner.invoke(args=["users", "disable", name]).exit_code == 0
    assert browser.get("/").status_code == 302
    assert api.get("/api/runs").status_code == 401
    # Enabling again lets the user sign in and use tokens; the old session stays
    # ended (it was signed in under an earlier epoch).
    assert runner.invoke(args=["users", "enable", name]).exit_code == 0
    assert api.get("/api/runs").status_code == 200
    assert browser.get("/").status_code == 302


def test_a_new_password_ends_every_session(app, make_user, runner):
    name, _ = make_user("operator", password=PASSWORD)
    browser = app.test_client(token=None)
    sign_in(browser, name)
    assert browser.get("/").status_code == 200
    result = runner.invoke(
        args=["users", "set-password", name, "--password-stdin"],
        input="another long password\n",
    )
    assert result.exit_code == 0 and "password:" not in result.output
    assert browser.get("/").status_code == 302
    assert sign_in(browser, name).status_code == 401
    assert sign_in(browser, name, "another long password").status_code == 303


def test_a_lower_role_applies_at_the_next_request(app, make_user, runner):
    name, token = make_user("operator")
    client = app.test_client(token=token)
    assert start(client).status_code == 202
    runner.invoke(args=["users", "set-role", name, "viewer"])
    assert start(client).status_code == 403


# -- the HTML pages --------------------------------------------------------------------


def page_text(response) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def test_pages_offer_only_what_the_role_allows(app, make_user):
    _, viewer = make_user("viewer")
    operator_name, operator = make_user("operator")
    viewer_page = app.test_client(token=viewer).get("/").text
    assert 'id="form-' not in viewer_page
    assert "may not start" in viewer_page
    operator_page = app.test_client(token=operator).get("/").text
    assert 'id="form-generate_data"' in operator_page
    assert 'id="form-prune_runs"' not in operator_page
    assert 'id="form-prune_runs"' in app.test_client().get("/").text

    mine = start(app.test_client(token=operator)).get_json()
    theirs = start(app.test_client()).get_json()
    own_page = app.test_client(token=operator).get(f"/runs/{mine['id']}")
    assert "cancel-form" in own_page.text and "rerun-form" in own_page.text
    assert f"Started by {operator_name}" in page_text(own_page)
    other_page = app.test_client(token=operator).get(f"/runs/{theirs['id']}").text
    assert "cancel-form" not in other_page and "rerun-form" in other_page
    viewer_run = app.test_client(token=viewer).get(f"/runs/{mine['id']}").text
    assert "cancel-form" not in viewer_run and "rerun-form" not in viewer_run
    listing = app.test_client().get(f"/runs?created_by={operator_name}")
    assert mine["id"][:8] in listing.text and theirs["id"][:8] not in listing.text


def form_fields(client, path: str, form_id: str) -> dict[str, str]:
    page = client.get(path).text
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S).group(0)
    return {
        k: unescape(v)
        for k, v in re.findall(
            r'<input type="hidden" name="(\w+)" value="([^"]*)">', form
        )
    }


def test_forms_follow_the_role_matrix(app, make_user):
    _, viewer = make_user("viewer")
    _, operator = make_user("operator")
    admin = app.test_client()
    fields = form_fields(admin, "/", "form-prune_runs")
    for token, status in ((viewer, 403), (operator, 403)):
        client = app.test_client(token=token)
        csrf = csrf_of(client.get("/").text)
        response = client.post(
            "/tasks/prune_runs/runs", data={"csrf_token": csrf, "older_than_days": "3"}
        )
        assert response.status_code == status
        assert "needs the admin role" in page_text(response)
    response = admin.post(
        "/tasks/prune_runs/runs", data={**fields, "older_than_days": "3"}
    )
    assert response.status_code == 202


def test_form_cancel_and_run_again(app, make_user):
    operator_name, operator_token = make_user("operator")
    operator = app.test_client(token=operator_token)
    theirs = start(app.test_client()).get_json()
    csrf = csrf_of(operator.get("/").text)
    refused = operator.post(f"/runs/{theirs['id']}/cancel", data={"csrf_token": csrf})
    assert refused.status_code == 403

    fields = form_fields(operator, f"/runs/{theirs['id']}", "rerun-form")
    again = operator.post(f"/runs/{theirs['id']}/rerun", data=fields)
    assert again.status_code == 202
    new_id = again.headers["Location"].rsplit("/", 1)[-1]
    # The same form sent twice is one run.
    twice = operator.post(f"/runs/{theirs['id']}/rerun", data=fields)
    assert twice.headers["Location"] == again.headers["Location"]
    with app.app_context():
        run = db.session.get(Run, new_id)
        assert (run.source, run.created_by, run.params) == (
            "web",
            operator_name,
            theirs["params"],
        )
    mine = operator.post(f"/runs/{new_id}/cancel", data={"csrf_token": csrf})
    assert mine.status_code == 303
    with app.app_context():
        assert db.session.get(Run, new_id).cancelled_by == operator_name


# -- the command line ------------------------------------------------------------------


def test_users_commands_manage_users_and_tokens(app, runner):
    created = runner.invoke(args=["users", "create", "Grace", "--role", "operator"])
    assert created.exit_code == 0, created.output
    password = re.search(r"password: (\S+)", created.output).group(1)
    assert "created user grace (operator)" in created.output
    assert sign_in(app.test_client(token=None), "grace", password).status_code == 303

    token = runner.invoke(args=["users", "token", "grace", "--label", "ci"]).output
    token = token.strip()
    assert app.test_client(token=token).get("/api/runs").status_code == 200
    listing = runner.invoke(args=["users", "list"]).output
    assert "grace\toperator\tenabled\ttokens: ci" in listing
    assert token not in listing

    with app.app_context():
        stored = db.session.scalars(select(ApiToken.token_hash)).all()
        hashes = db.session.scalars(select(User.password_hash)).all()
    assert token not in stored and all(len(h) == 64 for h in stored)
    assert password not in " ".join(h for h in hashes if h)
    assert any(h.startswith("scrypt:") for h in hashes if h)

    assert runner.invoke(args=["users", "set-role", "grace", "admin"]).exit_code == 0
    revoke_all = runner.invoke(args=["users", "revoke-token", "grace", "--all"])
    assert revoke_all.exit_code == 0
    assert app.test_client(token=token).get("/api/runs").status_code == 401
    neither = runner.invoke(args=["users", "revoke-token", "grace"])
    assert neither.exit_code == 2

    for args, message in (
        (["users", "create", "grace", "--role", "viewer"], "already exists"),
        (["users", "create", "bad name", "--role", "viewer"], "user name must be"),
        (["users", "create", "x", "--role", "root"], "'root' is not one of"),
        (["users", "disable", "nobody"], "no user is named 'nobody'"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and message in result.output, result.output
    short = runner.invoke(
        args=["users", "create", "h", "--role", "viewer", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code == 1 and "at least 8 characters" in short.output


def test_create_if_no_users_creates_only_the_first(app, runner):
    with app.app_context():
        db.session.execute(ApiToken.__table__.delete())
        db.session.execute(User.__table__.delete())
        db.session.commit()
    first = runner.invoke(
        args=["users", "create", "admin", "--role", "admin", "--if-no-users"]
    )
    assert first.exit_code == 0 and "password: " in first.output
    again = runner.invoke(
        args=["users", "create", "other", "--role", "admin", "--if-no-users"]
    )
    assert again.exit_code == 0 and again.output == ""


@pytest.mark.parametrize(
    ("role", "task", "exit_code"),
    [
        ("viewer", "generate_data", 1),
        ("operator", "generate_data", 0),
        ("operator", "prune_runs", 1),
        ("admin", "prune_runs", 0),
    ],
)
def test_tasks_run_as_a_user_follows_the_role_matrix(
    app, runner, make_user, role, task, exit_code
):
    name, _ = make_user(role)
    result = runner.invoke(args=["tasks", "run", task, "--as", name])
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "not started:" in result.output and "role" in result.output
    else:
        with app.app_context():
            run = db.session.scalar(select(Run).where(Run.source == "cli"))
            assert run.created_by == name


def test_tasks_run_acts_as_the_first_admin_by_default(app, runner, make_user):
    result = runner.invoke(args=["tasks", "run", "prune_runs"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        run = db.session.scalar(select(Run).where(Run.source == "cli"))
        assert run.created_by == "admin"
    missing = runner.invoke(args=["tasks", "run", "generate_data", "--as", "nobody"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# -- Dash (its callbacks' core, in a request of a signed-in user) ----------------------


def test_dash_starts_follow_the_role_matrix(app, make_user):
    _, viewer = make_user("viewer")
    name, operator = make_user("operator")
    with as_user(app, viewer):
        for mode in ("background", "queued"):
            started = core.start({"rows": "1"}, mode=mode)
            assert not started.ok and "needs the operator role" in started.message
    with as_user(app, operator):
        for mode in ("background", "queued"):
            started = core.start({"rows": "1"}, mode=mode)
            assert started.ok and started.run.created_by == name


# -- secrets in logs -------------------------------------------------------------------


def test_no_password_or_token_reaches_a_log_line(app, make_user, caplog):
    name, token = make_user("operator", password=PASSWORD)
    caplog.set_level(logging.DEBUG)
    client = app.test_client(token=None)
    sign_in(client, PASSWORD, "x")  # a password typed into the name field
    sign_in(client, name)
    start(app.test_client(token=token))
    start(app.test_client(token=token + "x"))
    assert caplog.text and "signed in: " + name in caplog.text
    assert PASSWORD not in caplog.text and token not in caplog.text


def test_tokens_and_passwords_are_stored_only_as_hashes(app, make_user):
    name, token = make_user("operator", password=PASSWORD)
    with app.app_context():
        user = users.get_user(name)
        assert user.password_hash != PASSWORD and user.password_hash.startswith(
            "scrypt:"
        )
        rows = db.session.scalars(select(ApiToken)).all()
        assert token not in {r.token_hash for r in rows}
        assert users.user_for_token(token).name == name


def test_the_command_line_is_not_rate_limited(make_app):
    app = make_app(START_RATE_LIMIT="1/minute")
    cli = app.test_cli_runner()
    for _ in range(3):
        assert cli.invoke(args=["tasks", "run", "summarize_data"]).exit_code == 0
    assert app.test_client().post("/api/tasks/summarize_data/runs").status_code == 202
    assert app.test_client().post("/api/tasks/summarize_data/runs").status_code == 429


def test_a_finished_run_followed_by_its_owner(app, worker, make_user):
    name, token = make_user("operator")
    client = app.test_client(token=token)
    run = start(client, body={"rows": 2, "seconds": 0}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS" and done["created_by"] == name
    assert client.delete(run["status_url"]).status_code == 409


def test_dash_calls_with_a_session_need_the_csrf_cookie_token(app, browser_client):
    page = browser_client.get("/dash/")
    assert page.status_code == 200
    cookie = browser_client.get_cookie("_csrf_token", path="/dash/")
    assert cookie is not None and not cookie.http_only
    assert cookie.same_site == "Strict"
    body = {
        "output": "schedule-info.children",
        "outputs": {"id": "schedule-info", "property": "children"},
        "inputs": [{"id": "schedule-interval", "property": "n_intervals", "value": 1}],
        "changedPropIds": ["schedule-interval.n_intervals"],
    }
    refused = browser_client.post("/dash/_dash-update-component", json=body)
    assert refused.status_code == 400
    answered = browser_client.post(
        "/dash/_dash-update-component",
        json=body,
        headers={"X-CSRFToken": cookie.value},
    )
    assert answered.status_code == 200, answered.text
    assert "generate_data" in answered.text and "schedule-info" in answered.text
    # With a bearer token (no cookie can carry one) no CSRF token is needed.
    assert (
        app.test_client().post("/dash/_dash-update-component", json=body).status_code
        == 200
    )


def test_an_idempotency_key_belongs_to_the_user_who_sent_it(app, make_user):
    _, token = make_user("operator")
    headers = {"Idempotency-Key": "nightly-1"}
    first = start(app.test_client(), headers=headers)
    assert (
        start(app.test_client(), headers=headers).get_json()["id"]
        == (first.get_json()["id"])
    )
    other = start(app.test_client(token=token), headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(app, runner):
    # The tests' own admin `admin` is the only admin so far.
    for args, change in (
        (["users", "set-role", "admin", "operator"], "cannot lose the admin role"),
        (["users", "disable", "admin"], "cannot be disabled"),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, result.output
        assert f"admin is the last enabled admin and {change}" in result.output
    assert app.test_client().get("/api/runs").status_code == 200

    # With a second admin, either may go; then the other is the last again.
    assert (
        runner.invoke(args=["users", "create", "root2", "--role", "admin"]).exit_code
        == 0
    )
    assert runner.invoke(args=["users", "disable", "admin"]).exit_code == 0
    assert app.test_client().get("/api/runs").status_code == 401
    last = runner.invoke(args=["users", "set-role", "root2", "viewer"])
    assert last.exit_code == 1 and "root2 is the last enabled admin" in last.output
    assert runner.invoke(args=["users", "enable", "admin"]).exit_code == 0
    assert runner.invoke(args=["users", "set-role", "root2", "viewer"]).exit_code == 0


# -- /tokens: a signed-in user's own API tokens ----------------------------------------


def test_the_tokens_page_makes_a_working_token_shown_once_and_revokes_it(
    browser_client,
):
    page = browser_client.get("/tokens").get_data(as_text=True)
    assert "<td>tests</td>" in page  # the one make_user made
    made = browser_client.post(
        "/tokens", data={"label": "nightly export", "csrf_token": csrf_of(page)}
    )
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    html = made.get_data(as_text=True)
    token = re.search(r'<pre id="new-token">(myapp_[^<]+)</pre>', html).group(1)
    assert "only this once" in html
    # Reload shows the list: the address bar says /tokens, and so does the page.
    assert 'data-page-url="/tokens"' in html

    api = browser_client.application.test_client(token=token)
    assert api.get("/api/runs").status_code == 200
    listed = browser_client.get("/tokens").get_data(as_text=True)
    assert "nightly export" in listed and token not in listed

    token_id = re.findall(r'action="/tokens/(\d+)/revoke"', listed)[-1]
    revoked = browser_client.post(
        f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(listed)}
    )
    assert "Revoked the token “nightly export”" in revoked.get_data(as_text=True)
    assert api.get("/api/runs").status_code == 401
    assert "nightly export" not in browser_client.get("/tokens").get_data(as_text=True)


def test_the_tokens_page_needs_a_label_and_the_csrf_token(browser_client, make_user):
    page = browser_client.get("/tokens").get_data(as_text=True)
    refused = browser_client.post("/tokens", data={"label": "x"})
    assert refused.status_code == 400
    empty = browser_client.post(
        "/tokens", data={"label": " ", "csrf_token": csrf_of(page)}
    )
    assert empty.status_code == 422 and "label must be 1 to 100" in empty.get_data(
        as_text=True
    )
    # Nobody revokes another user's token from their page.
    other, _ = make_user("admin")
    with browser_client.application.app_context():
        theirs = db.session.scalar(
            select(ApiToken.id).join(User).where(User.name == other)
        )
    answer = browser_client.post(
        f"/tokens/{theirs}/revoke", data={"csrf_token": csrf_of(page)}
    )
    assert answer.status_code == 404
