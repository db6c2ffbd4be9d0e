"""A task module outside `myapp` (tests/task_kinds.py), named in TASK_MODULES, on
every surface: the API and its OpenAPI document, the HTML form, the command line,
another Celery client, the shipped worker, roles, history and metrics; its results,
time limit, queue, progress and lease; and the modules and declarations
(tests/bad_tasks/) that must stop the app at start."""

from __future__ import annotations

import enum
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Annotated

import pytest
from celery.contrib.testing.worker import start_worker
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field
from werkzeug.datastructures import MultiDict

from myapp.extensions import db
from myapp.models import Run, utcnow
from myapp.runs import reaper
from myapp.tasks import RunContext, task
from myapp.tasks.declaration import declaration_of
from myapp.tasks.definition import TaskDeclarationError, TaskDefinition
from tests.support import (
    ROOT,
    Worker,
    app_environ,
    pending_run,
    procfile_command,
    settle,
    sweep,
    wait_for_state,
)


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


def test_parameters_named_like_schema_keywords_are_parameters():
    # The JSON Schema's own words (title, description, default) are also fine
    # parameter names; the schema keeps them as properties and the forms show them.
    @task
    def label(
        ctx: RunContext,
        title: Annotated[str, Field(min_length=2)],
        description: str = "",
        default: Shade = Shade.LIGHT,
    ) -> str:
        """Name something."""
        return title

    definition = TaskDefinition.build(declaration_of(label), {})
    properties = definition.schema()["properties"]
    assert list(properties) == ["title", "description", "default"]
    assert properties["title"] == {"minLength": 2, "maxLength": 1000, "type": "string"}
    assert properties["default"]["enum"] == ["light", "dark"]
    assert [f.name for f in definition.fields] == ["title", "description", "default"]
    assert definition.field("default").choices == ("light", "dark")
    assert definition.validate({"title": "ok", "default": "dark"}) == {
        "title": "ok",
        "description": "",
        "default": "dark",
    }


# -- modules and declarations that stop the app at start -------------------------


@pytest.mark.parametrize(
    ("module", "named"),
    [
        (
            "tests.bad_tasks.broken",
            [
                "module 'tests.bad_tasks.broken' cannot be imported",
                "RuntimeError: the report server is not configured",
            ],
        ),
        (
            "tests.bad_tasks.no_such_module",
            ["module 'tests.bad_tasks.no_such_module' cannot be imported"],
        ),
        (
            "tests.bad_tasks.dict_param",
            [
                "task configure (tests.bad_tasks.dict_param.configure)",
                "parameter 'options'",
            ],
        ),
        (
            "tests.bad_tasks.custom_type",
            [
                "task print_page (tests.bad_tasks.custom_type.print_page)",
                "parameter 'printer'",
            ],
        ),
        (
            "tests.bad_tasks.duplicate",
            [
                "two tasks are named 'generate_data'",
                "myapp.tasks.builtin.generate_data",
                "tests.bad_tasks.duplicate.make_rows",
            ],
        ),
        (
            "tests.bad_tasks.bad_default",
            [
                "task resize (tests.bad_tasks.bad_default.resize)",
                "parameter 'width'",
                "its default 8 is not a valid value",
            ],
        ),
    ],
)
def test_a_bad_task_module_stops_the_app_at_start_naming_it(make_app, module, named):
    with pytest.raises(TaskDeclarationError) as caught:
        make_app(TASK_MODULES=f"tests.task_kinds, {module}")
    message = str(caught.value)
    for words in named:
        assert words in message


# -- the team's module on every surface ------------------------------------------

KINDS = "tests.task_kinds"
# 2026-01-31 is a Saturday: isoweekday 6 proves the function got a `date`.
SATURDAY = "2026-01-31"


@pytest.fixture
def app(make_app):
    """An app with the team's task module: `client`, `runner` and `worker` use it."""
    return make_app(TASK_MODULES=KINDS)


def echoed(**changed):
    """What `every_kind` answers for its defaults, with `changed` applied."""
    return {
        "title": "hi",
        "loud": True,
        "loud_type": "bool",
        "count": 3,
        "count_type": "int",
        "ratio": 0.5,
        "ratio_type": "float",
        "size": "small",
        "level": 1,
        "level_type": "int",
        "mood": "calm",
        "colour": "GREEN",
        "colour_type": "Colour",
        "on_type": "date",
        "on_weekday": 4,
        "at_type": "datetime",
        "at_hour": 12,
        "tags": [],
        "tags_type": "list",
        "days": ["mon"],
        "note": None,
        "note_type": "NoneType",
        **changed,
    }


def test_the_task_is_listed_with_its_parameter_schema(client):
    tasks = {t["name"]: t for t in client.get("/api/tasks").get_json()}
    assert {"generate_data", "every_kind", "rich_result", "slow"} <= set(tasks)
    kinds = tasks["every_kind"]
    assert kinds["description"] == (
        "Echo every parameter with the Python type that reached the function."
    )
    assert kinds["role"] == "operator"
    assert kinds["runs_url"] == "/api/tasks/every_kind/runs"
    schema = kinds["parameters"]
    assert schema["required"] == ["title"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["title"] == {
        "type": "string",
        "minLength": 2,
        "maxLength": 20,
        "description": "What to call it.",
    }
    assert props["loud"] == {"type": "boolean", "default": True}
    assert props["count"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "default": 3,
        "description": "How many.",
    }
    assert props["size"]["enum"] == ["small", "large"]
    assert props["colour"]["enum"] == ["red", "green", "blue"]
    assert props["colour"]["default"] == "green"
    assert props["on"] == {"type": "string", "format": "date", "default": "2026-01-01"}
    assert props["at"]["format"] == "date-time"
    assert props["tags"]["type"] == "array"
    assert props["days"]["items"]["enum"] == ["mon", "tue", "wed"]
    assert {"type": "null"} in props["note"]["anyOf"]
    assert tasks["slow"]["time_limit"] == 2
    assert tasks["report_queue"]["queue"] == "reports"


def test_openapi_has_a_path_per_task_whose_body_is_its_schema(app, client):
    schema = next(
        t["parameters"]
        for t in client.get("/api/tasks").get_json()
        if t["name"] == "every_kind"
    )
    anonymous = app.test_client(token=None)
    document = anonymous.get("/api/openapi.json").get_json()
    start = document["paths"]["/api/tasks/every_kind/runs"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"] == schema
    assert "422" in start["responses"] and "202" in start["responses"]


def test_started_from_the_api_the_function_gets_python_types(client, worker):
    body = {
        "title": "api",
        "loud": False,
        "count": 7,
        "ratio": 2,
        "size": "large",
        "level": 3,
        "mood": None,
        "colour": "red",
        "on": SATURDAY,
        "at": "2026-02-01T08:15:00",
        "tags": ["a", "b"],
        "days": ["tue", "wed"],
        "note": "n",
    }
    response = client.post("/api/tasks/every_kind/runs", json=body)
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert response.headers["Location"] == f"/api/runs/{run['id']}"
    assert run["source"] == "api"
    assert run["params"] == {**body, "ratio": 2.0}
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS", done["error"]
    assert done["result"] == echoed(
        title="api",
        loud=False,
        count=7,
        ratio=2.0,
        size="large",
        level=3,
        mood=None,
        colour="RED",
        on_weekday=6,
        at_hour=8,
        tags=["a", "b"],
        days=["tue", "wed"],
        note="n",
        note_type="str",
    )


def test_an_empty_optional_body_starts_with_the_defaults(client, worker):
    run = client.post("/api/tasks/every_kind/runs", json={"title": "hi"}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["result"] == echoed()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"title": "hi", "loud": "true"}, {"loud": "must be true or false"}),
        ({"title": "hi", "loud": 1}, {"loud": "must be true or false"}),
        ({"title": "hi", "count": "5"}, {"count": "must be an integer"}),
        ({"title": "hi", "count": 11}, {"count": "must be at most 10"}),
        ({}, {"title": "is required"}),
        ({"title": "x"}, {"title": "must be at least 2 characters"}),
        ({"title": "x" * 21}, {"title": "must be at most 20 characters"}),
        ({"title": "hi", "size": "huge"}, {"size": "must be one of small, large"}),
        (
            {"title": "hi", "colour": "RED"},
            {"colour": "must be one of red, green, blue"},
        ),
        ({"title": "hi", "on": "2026-02-30"}, {"on": "must be a date (YYYY-MM-DD)"}),
        ({"title": "hi", "tags": "a,b"}, {"tags": "must be a list"}),
        (
            {"title": "hi", "days": ["mon", "fri"]},
            {"days": "item 2: must be one of mon, tue, wed"},
        ),
    ],
)
def test_bad_json_values_are_422_naming_the_field(client, body, fields):
    response = client.post("/api/tasks/every_kind/runs", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["fields"] == fields
    assert client.get("/api/runs").get_json()["items"] == []


# -- the HTML form ---------------------------------------------------------------


def form_of(html: str, task: str) -> str:
    match = re.search(
        rf'<form class="task" id="form-{task}".*?</form>', html, flags=re.DOTALL
    )
    assert match, f"no form for {task}"
    return match.group(0)


def form_fields(client, task: str) -> list[tuple[str, str]]:
    """What the browser sends for the form as served and left untouched: its hidden
    inputs (CSRF token, one-time key, each checkbox's "false")."""
    form = form_of(client.get("/").get_data(as_text=True), task)
    return [
        (name, unescape(value))
        for name, value in re.findall(
            r'<input type="hidden" name="(\w+)" value="([^"]*)">', form
        )
    ]


def submit(client, task: str, *fields: tuple[str, str]):
    data = MultiDict([*form_fields(client, task), *fields])
    return client.post(f"/tasks/{task}/runs", data=data)


def test_the_form_shows_each_kind_as_its_input(client):
    form = form_of(client.get("/").get_data(as_text=True), "every_kind")
    assert 'action="/tasks/every_kind/runs"' in form
    assert '<input type="hidden" name="loud" value="false">' in form
    assert re.search(r'id="every_kind-loud" name="loud" type="checkbox"', form)
    assert re.search(r'<select id="every_kind-days" name="days" multiple', form)
    assert re.search(r'<select id="every_kind-colour" name="colour"', form)
    assert re.search(
        r'id="every_kind-on" name="on" type="date" value="2026-01-01"', form
    )
    assert 'name="at" type="datetime-local"' in form
    count = re.search(r'<input id="every_kind-count"[^>]*>', form, re.S)[0]
    assert 'type="text"' in count and 'inputmode="numeric"' in count
    assert "Whole number from 1 to 10." in form


def test_an_unticked_checkbox_runs_with_false(client, worker):
    # Only the hidden "false" is sent: the old forms passed the text on, and
    # "false" is truthy.
    response = submit(
        client,
        "every_kind",
        ("title", "form"),
        ("count", "5"),
        ("level", "2"),
        ("mood", ""),
        ("days", "tue"),
        ("days", "wed"),
        ("on", SATURDAY),
        ("at", "2026-02-01T08:15"),
        ("tags", "a, b"),
        ("note", ""),
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    run_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"] == f"/runs/{run_id}"
    done = wait_for_state(client, run_id, ("SUCCESS", "FAILURE"))
    assert done["source"] == "web"
    assert done["state"] == "SUCCESS", done["error"]
    assert done["result"] == echoed(
        title="form",
        loud=False,
        count=5,
        level=2,
        mood=None,
        days=["tue", "wed"],
        on_weekday=6,
        at_hour=8,
        tags=["a", "b"],
    )


def test_a_ticked_checkbox_runs_with_true(client, worker):
    response = submit(client, "every_kind", ("title", "form"), ("loud", "true"))
    assert response.status_code == 202, response.get_data(as_text=True)
    run_id = response.headers["Location"].rsplit("/", 1)[-1]
    done = wait_for_state(client, run_id, ("SUCCESS", "FAILURE"))
    assert done["result"]["loud"] is True


def test_a_bad_form_value_is_shown_on_the_form_and_nothing_starts(client):
    response = submit(client, "every_kind", ("title", "form"), ("count", "11"))
    assert response.status_code == 422
    form = form_of(response.get_data(as_text=True), "every_kind")
    assert "count must be at most 10" in form
    assert client.get("/api/runs").get_json()["items"] == []


# -- the command line ------------------------------------------------------------


def test_tasks_list_shows_the_team_task_and_its_parameters(runner):
    result = runner.invoke(args=["tasks", "list"])
    assert result.exit_code == 0, result.output
    assert "every_kind: Echo every parameter" in result.output
    assert "loud=… (true/false; default true)" in result.output
    assert "days=… (list (comma-separated) of one of mon, tue, wed" in result.output


def test_the_cli_reads_booleans_lists_and_dates(runner, worker):
    result = runner.invoke(
        args=[
            "tasks",
            "run",
            "every_kind",
            "title=cli",
            "loud=false",
            "tags=a,b",
            f"on={SATURDAY}",
            "days=mon,wed",
            "colour=blue",
            "level=3",
            "mood=none",
            "--wait",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "SUCCESS" in result.output
    result_line = next(
        line for line in result.output.splitlines() if line.startswith("result: ")
    )
    assert json.loads(result_line.removeprefix("result: ")) == echoed(
        title="cli",
        loud=False,
        tags=["a", "b"],
        on_weekday=6,
        days=["mon", "wed"],
        colour="BLUE",
        level=3,
        mood=None,
    )


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("loud=maybe", "loud: must be true or false"),
        ("count=11", "count: must be at most 10"),
        ("on=31/01/2026", "on: must be a date (YYYY-MM-DD)"),
        ("days=mon,fri", "days: item 2: must be one of mon, tue, wed"),
    ],
)
def test_a_bad_cli_value_exits_2_naming_the_field(client, runner, arg, message):
    result = runner.invoke(args=["tasks", "run", "every_kind", "title=cli", arg])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert client.get("/api/runs").get_json()["items"] == []


# -- another Celery client -------------------------------------------------------


def test_an_external_celery_client_starts_it_by_name(app, client, worker):
    sent = app.extensions["celery"].send_task(
        "every_kind",
        kwargs={"title": "ext", "loud": False, "on": SATURDAY, "tags": ["x"]},
    )
    done = wait_for_state(client, sent.id, ("SUCCESS", "FAILURE"))
    assert done["source"] == "external"
    assert done["created_by"] is None
    assert done["state"] == "SUCCESS", done["error"]
    assert done["result"] == echoed(title="ext", loud=False, on_weekday=6, tags=["x"])


def test_bad_kwargs_from_a_celery_client_end_failure_with_the_field_message(
    app, client, worker
):
    sent = app.extensions["celery"].send_task(
        "every_kind", kwargs={"title": "ext", "loud": "yes"}
    )
    done = wait_for_state(client, sent.id, ("SUCCESS", "FAILURE"))
    assert done["state"] == "FAILURE"
    assert done["source"] == "external"
    assert done["error"] == {
        "type": "ValidationError",
        "message": "loud: must be true or false",
    }
    assert done["result"] is None


# -- results -----------------------------------------------------------------------


def test_numpy_decimal_date_and_figure_results_are_stored_converted(client, worker):
    run = client.post("/api/tasks/rich_result/runs", json={}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS", done["error"]
    result = done["result"]
    figure = result.pop("figure")
    assert result == {
        "count": 3,
        "mean": 1.5,
        "values": [0, 1, 2],
        "price": 2.5,
        "day": "2026-01-31",
    }
    # The figure as Plotly's own JSON: what a chart is drawn from.
    (trace,) = figure["data"]
    assert trace["type"] == "bar" and trace["x"] == ["a", "b"]
    assert "layout" in figure
    assert done["attempts"] == 1


def test_an_unconvertible_result_fails_at_once_and_is_not_run_again(
    app, client, worker
):
    run = client.post("/api/tasks/opaque_result/runs", json={}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "FAILURE"
    assert done["error"]["type"] == "ResultNotSerializable"
    assert "JSON cannot hold" in done["error"]["message"]
    assert "set" in done["error"]["message"]
    assert done["result"] is None
    assert done["attempts"] == 1
    # Nothing left for the reaper: it is finished, not STARTED.
    assert not sweep(app)
    assert client.get(f"/api/runs/{run['id']}").get_json() == done


# -- per-task options: time limit and queue -------------------------------------


@pytest.fixture
def prefork_worker(app, worker_for) -> Iterator[None]:
    """Time limits are enforced by the prefork pool only."""
    with worker_for(app, pool="prefork"):
        yield


def test_a_run_past_its_own_time_limit_ends_failure(client, prefork_worker):
    run = client.post("/api/tasks/slow/runs", json={"seconds": 30}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"), timeout=30)
    assert done["state"] == "FAILURE"
    assert done["error"] == {
        "type": "TimeLimitExceeded",
        "message": "the run reached its time limit of 2 s",
    }
    # Its own 2 s (the soft limit a little before), far from the global 660 s.
    assert done["duration_s"] < 5


def test_a_run_killed_at_its_hard_limit_ends_failure_once(client, prefork_worker):
    # It ignores the soft limit, so the pool kills it at the hard one: the worker
    # records that at once (no STARTED row for the reaper to run again).
    run = client.post("/api/tasks/stubborn/runs", json={}).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"), timeout=30)
    assert done["state"] == "FAILURE" and done["attempts"] == 1
    assert done["error"]["type"] == "TimeLimitExceeded"
    assert "hard time limit (2 s)" in done["error"]["message"]


def test_the_reaper_holds_each_run_to_its_own_task_limit(app):
    with app.app_context():
        assert reaper.hard_time_limit("slow") == 2
        assert reaper.hard_time_limit("every_kind") == 720
        assert reaper.hard_time_limit() == 720
        # Both runs started 10 s past `slow`'s limit and slack, and are alive
        # (fresh heartbeats): only the run of `slow` is over its time.
        now = utcnow()
        started = now - timedelta(seconds=2 + app.config["REAPER_SLACK_SECONDS"] + 10)
        slow = pending_run("slow", {}, source="api")
        other = pending_run("every_kind", {"title": "hi"}, source="api")
        for run in (slow, other):
            run.state, run.started_at, run.heartbeat_at = "STARTED", started, now
            run.attempts = 1
        db.session.commit()
        report = reaper.reap_runs(now)
        assert report.failed == [slow.id]
        db.session.expire_all()
        assert db.session.get(Run, slow.id).to_dict()["error"] == {
            "type": "TimeLimitExceeded",
            "message": "ran longer than the hard time limit (2 s) and was stopped",
        }
        assert db.session.get(Run, other.id).state == "STARTED"


def queued_ids(redis_client, queue: str) -> list[str]:
    """Task ids of the messages waiting in a broker queue (a Redis list)."""
    return [
        json.loads(message)["headers"]["id"]
        for message in redis_client.lrange(queue, 0, -1)
    ]


def test_a_task_with_its_own_queue_runs_only_on_a_worker_of_that_queue(
    app, client, redis_server
):
    celery_app = app.extensions["celery"]
    broker = redis_server.client()
    with start_worker(
        celery_app,
        pool="solo",
        queues=["celery"],
        perform_ping_check=True,
        shutdown_timeout=30,
        loglevel="WARNING",
    ):
        queued = client.post("/api/tasks/report_queue/runs", json={}).get_json()
        # A run sent after it, on `celery`, is done: the worker was free and never
        # took the `reports` message.
        other = client.post("/api/tasks/every_kind/runs", json={"title": "hi"})
        wait_for_state(client, other.get_json()["id"], ("SUCCESS",))
        assert client.get(queued["status_url"]).get_json()["state"] == "PENDING"
        assert queued_ids(broker, "reports") == [queued["id"]]
        assert queued["id"] not in queued_ids(broker, "celery")
    with start_worker(
        celery_app,
        pool="solo",
        queues=["reports"],
        perform_ping_check=False,
        shutdown_timeout=30,
        loglevel="WARNING",
    ):
        done = wait_for_state(client, queued["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS", done["error"]
    assert done["result"] == "reported"
    assert queued_ids(broker, "reports") == []


def test_a_run_quiet_for_longer_than_its_lease_is_not_taken_for_lost(make_app):
    # A team's task need not report progress to stay alive: a live run that says
    # nothing for several leases is neither sent again nor failed as WorkerLost.
    app = make_app(TASK_MODULES=KINDS, RUN_LEASE_SECONDS=1)
    client = app.test_client()
    with start_worker(
        app.extensions["celery"],
        pool="solo",
        perform_ping_check=True,
        shutdown_timeout=30,
        loglevel="WARNING",
    ):
        run = client.post("/api/tasks/quiet/runs", json={"seconds": 4}).get_json()
        wait_for_state(client, run["id"], ("STARTED", "PROGRESS"))
        done, reaped = settle(app, [run["id"]], timeout=30)
    assert reaped == set()
    assert done[run["id"]].state == "SUCCESS"
    assert done[run["id"]].attempts == 1


# -- who may start it; starting it again -------------------------------------------


def test_the_declared_role_is_enforced(app, make_user):
    _, viewer = make_user("viewer")
    _, operator = make_user("operator")
    body = {"title": "hi"}
    refused = app.test_client(token=viewer).post(
        "/api/tasks/every_kind/runs", json=body
    )
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    started = app.test_client(token=operator).post(
        "/api/tasks/every_kind/runs", json=body
    )
    assert started.status_code == 202


def test_a_rerun_gets_the_same_python_values(client, worker):
    body = {"title": "again", "on": SATURDAY, "colour": "blue", "days": ["wed"]}
    first = client.post("/api/tasks/every_kind/runs", json=body).get_json()
    wait_for_state(client, first["id"], ("SUCCESS",))
    response = client.post(f"/api/runs/{first['id']}/rerun")
    assert response.status_code == 202, response.get_json()
    second = wait_for_state(client, response.get_json()["id"], ("SUCCESS", "FAILURE"))
    assert second["params"] == first["params"]
    assert second["result"] == echoed(
        title="again", on_weekday=6, colour="BLUE", days=["wed"]
    )


def test_positional_arguments_from_a_celery_client_are_refused(app, client, worker):
    sent = app.extensions["celery"].send_task("every_kind", args=["hi"])
    done = wait_for_state(client, sent.id, ("SUCCESS", "FAILURE"))
    assert done["state"] == "FAILURE"
    assert done["error"]["type"] == "ValidationError"
    assert "send parameters by name" in done["error"]["message"]


# -- every process reads TASK_MODULES from its environment ---------------------------


def test_the_shipped_worker_runs_the_team_task(app, client, tmp_path):
    worker = Worker.for_app(app, "kinds", tmp_path, concurrency=1)
    try:
        run = client.post("/api/tasks/every_kind/runs", json={"title": "proc"})
        done = wait_for_state(client, run.get_json()["id"], ("SUCCESS", "FAILURE"))
    finally:
        worker.stop()
    assert done["state"] == "SUCCESS", done["error"]
    assert done["result"] == echoed(title="proc")


@pytest.mark.parametrize("process", ["worker", "flask"])
def test_a_broken_task_module_stops_a_process_at_start(app, tmp_path, process):
    env = {
        **app_environ(app),
        "TASK_MODULES": "tests.task_kinds,tests.bad_tasks.custom_type",
    }
    if process == "worker":
        argv = procfile_command("worker", env)
    else:
        argv = [sys.executable, "-m", "flask", "--app", "wsgi", "tasks", "list"]
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert (
        "TaskDeclarationError: task print_page "
        "(tests.bad_tasks.custom_type.print_page), parameter 'printer'"
    ) in done.stderr


def test_a_progress_report_before_quiet_work_is_shown_while_it_works(client, worker):
    # The contract's example reports "starting" once, then works: that word is
    # what the run shows meanwhile, not a bare STARTED.
    run = client.post("/api/tasks/quiet/runs", json={"seconds": 3}).get_json()
    working = wait_for_state(client, run["id"], ("PROGRESS", "SUCCESS"), timeout=10)
    assert working["state"] == "PROGRESS"
    assert working["progress"] == {"current": 0, "total": 1, "message": "thinking"}
    assert wait_for_state(client, run["id"], ("SUCCESS",))["result"] == {"slept": 3}


def test_metrics_count_the_team_task_and_its_queue(client, worker):
    run = client.post("/api/tasks/every_kind/runs", json={"title": "hi"}).get_json()
    wait_for_state(client, run["id"], ("SUCCESS",))
    found = {
        family.name: family.samples
        for family in text_string_to_metric_families(
            client.get("/metrics").get_data(as_text=True)
        )
    }
    finished = {
        (s.labels["task"], s.labels["source"], s.labels["state"]): s.value
        for s in found["myapp_runs_finished"]
        if s.name == "myapp_runs_finished_total"
    }
    assert finished[("every_kind", "api", "SUCCESS")] >= 1
    queues = {s.labels["queue"] for s in found["myapp_queue_messages"]}
    assert queues == {"celery", "maintenance", "reports"}


def test_the_cli_enforces_the_declared_role(client, runner, make_user):
    name, _ = make_user("viewer")
    result = runner.invoke(
        args=["tasks", "run", "every_kind", "title=cli", "--as", name]
    )
    assert result.exit_code == 1, result.output
    assert "not started" in result.output
    assert client.get("/api/runs").get_json()["items"] == []


def test_the_history_filters_on_the_team_task(client):
    run = client.post("/api/tasks/every_kind/runs", json={"title": "hi"}).get_json()
    client.post("/api/tasks/generate_data/runs", json={"rows": 1})
    items = client.get("/api/runs?task=every_kind").get_json()["items"]
    assert [item["id"] for item in items] == [run["id"]]
    page = client.get("/runs?task=every_kind")
    assert page.status_code == 200
    assert f'href="/runs/{run["id"]}"' in page.get_data(as_text=True)
