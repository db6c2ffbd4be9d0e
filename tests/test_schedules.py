"""Schedules as users meet them, without beat: saving (every bad input is a 422
naming its field), who may, next fire times, the pause the app applies when a
schedule can no longer run, run now, the pages and the command line. Beat and the
worker firing them are in test_schedules_beat.py."""

from __future__ import annotations

import itertools
import logging
import re
from datetime import datetime

import pytest

from myapp.extensions import db
from myapp.models import Schedule, utcnow
from myapp.schedules import Timing
from tests.support import wait_for_state

NIGHTLY = {
    "name": "nightly-report",
    "task": "build_report",
    "params": {"period": "day", "include_chart": True},
    "cron": "0 2 * * *",
    "timezone": "Europe/Paris",
    "description": "the day's report",
}


def csrf(client) -> str:
    """The CSRF token the pages' forms carry, as a browser would read it."""
    page = client.get("/schedules", headers={"Accept": "text/html"}).get_data(True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def create(client, **overrides):
    return client.post("/api/schedules", json={**NIGHTLY, **overrides})


def test_create_read_list_and_next_runs_in_utc(client):
    response = create(client)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == body["url"] == f"/api/schedules/{body['id']}"
    assert body["created_by"] == "admin" and body["enabled"] is True
    assert body["every_s"] is None and body["paused_reason"] is None
    assert body["params"] == {"period": "day", "include_chart": True}
    assert body["describe"] == "At 02:00 every day (Europe/Paris)"
    # 02:00 in Paris is 01:00 UTC in winter, 00:00 in summer: three days in a row.
    times = [datetime.fromisoformat(t.replace("Z", "")) for t in body["next_runs"]]
    assert len(times) == 3 and all(t.minute == 0 and t.hour in (0, 1) for t in times)
    assert [(b - a).days for a, b in itertools.pairwise(times)] == [1, 1]
    assert all(t > utcnow() for t in times)
    assert client.get(body["url"]).get_json()["name"] == "nightly-report"
    items = client.get("/api/schedules").get_json()["items"]
    assert [s["name"] for s in items] == ["nightly-report"]


def test_interval_next_runs_follow_the_interval(client):
    body = create(client, cron=None, every_s=600, name="ten-minutes").get_json()
    first, second, third = (
        datetime.fromisoformat(t.replace("Z", "")) for t in body["next_runs"]
    )
    assert (second - first).total_seconds() == (third - second).total_seconds() == 600
    assert body["describe"] == "every 10 min"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"params": {"period": "week"}}, "params.period", "must be one of"),
        ({"params": {"nope": 1}}, "params.nope", "is not a parameter of build_report"),
        ({"params": [1]}, "params", "must be an object"),
        ({"cron": "61 * * * *"}, "cron", "bad minute"),
        ({"cron": "* * *"}, "cron", "must have five fields"),
        ({"cron": 5}, "cron", "must be a cron expression"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA time zone"),
        ({"timezone": "../../etc/passwd"}, "timezone", "IANA time zone"),
        ({"every_s": 5, "cron": None}, "every_s", "between 10 and"),
        ({"every_s": "60", "cron": None}, "every_s", "whole number"),
        ({"every_s": 60}, "every_s", "not both"),
        ({"cron": None}, "every_s", "give every_s"),
        ({"name": ""}, "name", "is required"),
        ({"name": "Has Spaces"}, "name", "lower-case"),
        ({"name": "x" * 101}, "name", "1 to 100"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"description": "x" * 501}, "description", "at most 500"),
        ({"colour": "red"}, "colour", "is not a field of a schedule"),
    ],
)
def test_every_bad_input_is_a_422_naming_its_field(client, change, field, words):
    response = create(client, **change)
    assert response.status_code == 422, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert field in fields and words in fields[field], fields
    assert client.get("/api/schedules").get_json()["items"] == []


def test_parameter_messages_are_those_of_a_start(client):
    start = client.post("/api/tasks/generate_data/runs", json={"rows": 0})
    saved = create(client, task="generate_data", params={"rows": 0}, name="g")
    assert saved.status_code == start.status_code == 422
    message = start.get_json()["error"]["fields"]["rows"]
    assert saved.get_json()["error"]["fields"] == {"params.rows": message}


def test_unknown_task_is_404_and_a_taken_name_409(client):
    assert create(client, task="nope").status_code == 404
    assert create(client).status_code == 201
    taken = create(client)
    assert taken.status_code == 409
    assert taken.get_json()["error"]["fields"] == {"name": "is taken"}


def test_patch_edits_and_switches_between_interval_and_cron(client):
    url = create(client).get_json()["url"]
    body = client.patch(url, json={"every_s": 3600}).get_json()
    assert body["every_s"] == 3600 and body["cron"] is None
    assert body["describe"] == "every 1 h"
    body = client.patch(url, json={"cron": "*/15 * * * *", "timezone": "UTC"})
    assert body.get_json()["cron"] == "*/15 * * * *"
    assert body.get_json()["every_s"] is None
    paused = client.patch(url, json={"enabled": False}).get_json()
    assert paused["enabled"] is False and paused["next_runs"] == []
    bad = client.patch(url, json={"params": {"period": "year"}, "timezone": "Nowhere"})
    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"params.period", "timezone"}
    assert client.patch(url, json={"name": "renamed"}).status_code == 422
    assert client.patch("/api/schedules/999999", json={}).status_code == 404
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404


def test_changes_are_logged_with_who_made_them(client, caplog):
    caplog.set_level(logging.INFO, logger="myapp.schedules")
    url = create(client).get_json()["url"]
    client.patch(url, json={"enabled": False})
    client.delete(url)
    lines = [r.getMessage() for r in caplog.records if r.name == "myapp.schedules"]
    assert [line.split(") ", 1)[1] for line in lines] == [
        "created by admin",
        "changed (enabled) by admin",
        "deleted by admin",
    ]


def test_roles(app, client, make_user):
    viewer = app.test_client(token=make_user("viewer")[1])
    operator_name, token = make_user("operator")
    operator = app.test_client(token=token)
    admins = create(client, task="generate_data", params={}, name="admins").get_json()
    # Viewers read, and change nothing.
    assert viewer.get("/api/schedules").status_code == 200
    assert create(viewer, name="v").status_code == 403
    assert viewer.patch(admins["url"], json={"enabled": False}).status_code == 403
    assert viewer.post(admins["url"] + "/run").status_code == 403
    assert viewer.delete(admins["url"]).status_code == 403
    # Operators manage schedules of the tasks they may start, whoever made them.
    assert operator.patch(admins["url"], json={"every_s": 60}).status_code == 200
    prune = create(client, task="prune_runs", params={"older_than_days": 3}, name="p")
    assert create(operator, task="prune_runs", name="op-prune").status_code == 403
    prune_url = prune.get_json()["url"]
    assert operator.patch(prune_url, json={"enabled": False}).status_code == 403
    assert operator.delete(prune_url).status_code == 403
    mine = create(operator, task="generate_data", params={"rows": 2}, name="mine")
    assert mine.get_json()["created_by"] == operator_name
    # The pages refuse them the same way.
    page = viewer.post(
        "/schedules/new",
        data={"csrf_token": csrf(viewer), "schedule.task": "generate_data"},
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 403
    # Anonymous callers get 401.
    assert app.test_client(token=None).get("/api/schedules").status_code == 401


def test_a_schedule_the_app_cannot_run_is_shown_paused_with_the_reason(
    app, client, runner, make_user
):
    name, token = make_user("operator")
    operator = app.test_client(token=token)
    url = create(operator, task="generate_data", params={}, name="ops").get_json()[
        "url"
    ]
    runner.invoke(args=["users", "set-role", name, "viewer"])
    body = client.get(url).get_json()
    assert body["enabled"] is False
    assert body["paused_reason"] == (
        f"its creator {name} (viewer) may no longer start generate_data, "
        "which needs the operator role"
    )
    runner.invoke(args=["users", "set-role", name, "operator"])
    runner.invoke(args=["users", "disable", name])
    assert client.get(url).get_json()["paused_reason"] == (
        f"its creator {name} is disabled"
    )
    with app.app_context():
        db.session.add(
            Schedule(name="orphan", task="removed_task", params={}, every_s=60)
        )
        db.session.commit()
    (orphan,) = [
        s
        for s in client.get("/api/schedules").get_json()["items"]
        if s["name"] == "orphan"
    ]
    assert orphan["enabled"] is False
    assert orphan["paused_reason"] == "its task 'removed_task' no longer exists"
    page = client.get("/schedules", headers={"Accept": "text/html"}).get_data(True)
    assert "its task &#39;removed_task&#39; no longer exists" in page


def test_run_now_is_a_start_by_the_caller_with_the_schedule_id(client, worker):
    schedule = create(
        client,
        task="generate_data",
        params={"rows": 2, "seconds": 0},
        name="now",
        enabled=False,
    ).get_json()
    response = client.post(schedule["url"] + "/run")
    assert response.status_code == 202
    run = response.get_json()
    assert response.headers["Location"] == run["status_url"]
    assert run["schedule_id"] == schedule["id"] and run["source"] == "api"
    assert run["created_by"] == "admin" and run["params"] == {"rows": 2, "seconds": 0}
    assert wait_for_state(client, run["id"], ("SUCCESS",))["result"]["rows"] == 2
    listed = client.get(f"/api/runs?schedule_id={schedule['id']}").get_json()["items"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert client.get("/api/runs?schedule_id=999").get_json()["items"] == []
    assert client.get("/api/runs?schedule_id=x").status_code == 400
    again = client.get(schedule["url"]).get_json()
    assert again["last_run_id"] == run["id"]


def test_cli_add_list_pause_resume_run_delete(app, runner, worker):
    result = runner.invoke(
        args=[
            *("schedules", "add", "every-minute", "generate_data"),
            *("--every", "60", "rows=3", "seconds=0"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "every-minute" in result.output and "every 1 min" in result.output
    bad = runner.invoke(
        args=["schedules", "add", "b", "generate_data", "--cron", "99 * * * *"]
    )
    assert bad.exit_code == 2 and "cron: is not a valid cron expression" in bad.output
    bad = runner.invoke(
        args=["schedules", "add", "b", "generate_data", "--every", "60", "rows=0"]
    )
    assert bad.exit_code == 2 and "params.rows:" in bad.output
    both = runner.invoke(args=["schedules", "add", "b", "generate_data"])
    assert both.exit_code == 2 and "exactly one of --every" in both.output
    tz = runner.invoke(
        args=[
            *("schedules", "add", "paris", "summarize_data"),
            *("--cron", "30 6 * * 1-5", "--tz", "Europe/Paris"),
        ]
    )
    assert tz.exit_code == 0, tz.output
    listing = runner.invoke(args=["schedules", "list"]).output
    assert re.search(r"every-minute  generate_data rows=3 seconds=0", listing)
    assert "paris  summarize_data  [At 06:30 on Monday" in listing
    assert runner.invoke(args=["schedules", "pause", "paris"]).exit_code == 0
    assert "paris" in runner.invoke(args=["schedules", "list"]).output
    assert "paused" in runner.invoke(args=["schedules", "list"]).output
    assert runner.invoke(args=["schedules", "resume", "paris"]).exit_code == 0
    ran = runner.invoke(args=["schedules", "run", "every-minute"])
    assert ran.exit_code == 0, ran.output
    run_id = re.search(r"run (\S+) PENDING", ran.output).group(1)
    client = app.test_client()
    run = wait_for_state(client, run_id, ("SUCCESS",))
    assert run["source"] == "cli" and run["schedule_id"] is not None
    assert runner.invoke(args=["schedules", "delete", "paris"]).exit_code == 0
    missing = runner.invoke(args=["schedules", "pause", "paris"])
    assert missing.exit_code == 2 and "no schedule is named 'paris'" in missing.output


def test_pages_list_form_messages_and_buttons(app, client):
    html = {"Accept": "text/html"}
    create(client)
    page = client.get("/schedules", headers=html).get_data(True)
    assert "nightly-report" in page and "At 02:00 every day (Europe/Paris)" in page
    assert "Run now" in page and "Disable" in page and ":00 UTC" in page
    assert client.get("/schedules/new", headers=html).status_code == 200
    form = client.get("/schedules/new?task=generate_data", headers=html)
    assert 'name="rows"' in form.get_data(True)
    token = csrf(client)
    sent = client.post(
        "/schedules/new",
        headers=html,
        data={
            "csrf_token": token,
            "schedule.name": "from-form",
            "schedule.task": "generate_data",
            "schedule.kind": "cron",
            "schedule.cron": "0 25 * * *",
            "schedule.timezone": "Atlantis/Capital",
            "schedule.enabled": "true",
            "rows": "0",
        },
    )
    assert sent.status_code == 422
    text = sent.get_data(True)
    assert "cron is not a valid cron expression: bad hour" in text
    assert "timezone is not an IANA time zone name" in text
    assert "rows must be" in text
    good = client.post(
        "/schedules/new",
        headers=html,
        data={
            "csrf_token": token,
            "schedule.name": "from-form",
            "schedule.task": "generate_data",
            "schedule.kind": "every",
            "schedule.every_s": "120",
            "schedule.timezone": "UTC",
            "schedule.enabled": "true",
            "rows": "4",
            "seconds": "",
        },
    )
    assert good.status_code == 303, good.get_data(True)
    items = {s["name"]: s for s in client.get("/api/schedules").get_json()["items"]}
    saved = items["from-form"]
    assert saved["every_s"] == 120 and saved["params"] == {"rows": 4}
    edit = f"/schedules/{saved['id']}"
    assert 'value="4"' in client.get(edit, headers=html).get_data(True)
    form = {"csrf_token": token}
    off = client.post(edit + "/disable", headers=html, data=form)
    assert off.status_code == 303
    assert client.get(saved["url"]).get_json()["enabled"] is False
    ran = client.post(edit + "/run", headers=html, data=form)
    assert ran.status_code == 303 and ran.headers["Location"].startswith("/runs/")
    assert client.post(edit + "/delete", headers=html, data=form).status_code == 303
    assert client.get(saved["url"]).status_code == 404


def test_a_missed_stretch_is_one_fire_and_an_edit_fires_nothing():
    every_minute = Timing(60, None)
    start = datetime(2026, 12, 1, 0, 0)
    late = datetime(2026, 12, 1, 0, 10, 30)
    # Ten missed minutes: the latest fire only.
    assert every_minute.due(anchor=start, last_fire=start, now=late) == datetime(
        2026, 12, 1, 0, 10
    )
    # Edited after that fire time: nothing until the next one.
    changed = datetime(2026, 12, 1, 0, 10, 15)
    assert (
        every_minute.due(anchor=start, last_fire=start, now=late, changed=changed)
        is None
    )
    nightly = Timing(None, "0 2 * * *", "Europe/Paris")
    two_days_late = datetime(2026, 12, 3, 12, 0)
    assert nightly.due(
        anchor=start, last_fire=datetime(2026, 12, 1, 1, 0), now=two_days_late
    ) == datetime(2026, 12, 3, 1, 0)
    # Already sent: not again.
    assert (
        nightly.due(
            anchor=start, last_fire=datetime(2026, 12, 3, 1, 0), now=two_days_late
        )
        is None
    )
