"""Fast tests of the Dash pages' logic, called directly where a browser adds nothing.
Real Redis and database throughout; no worker unless a run must execute."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import plotly.utils
import pytest
from dash.background_callback.managers import BaseBackgroundCallbackManager

from myapp import runs
from myapp.dashboard import core, data, forms, history, ids, results
from myapp.extensions import db, get_store
from myapp.models import ACTIVE_STATES, Run
from myapp.tasks import ValidationError, get_definition
from tests.support import add_schedule, as_user, free_port, pending_run, wait_for


def job_closure(celery_app, name):
    """The Dash callback function a registered background job will call."""
    return inspect.getclosurevars(celery_app.tasks[name].run).nonlocals["fn"]


def test_each_app_runs_its_own_background_callbacks(make_app):
    registry = (
        len(BaseBackgroundCallbackManager.managers),
        len(BaseBackgroundCallbackManager.functions),
    )
    first, second = make_app(), make_app()
    names = []
    for app in (first, second):
        dash_app = app.extensions["dash"]
        manager = dash_app._background_manager
        (name,) = manager.job_names()
        names.append(name)
        declared = next(
            cb["callback"].__wrapped__
            for cb in dash_app.callback_map.values()
            if cb.get("background")
        )
        # The job on this app's Celery app calls this app's callback, not the other's.
        assert job_closure(app.extensions["celery"], name) is declared
    assert names[0] == names[1]  # same code, same name: the worker finds it
    assert job_closure(first.extensions["celery"], names[0]) is not job_closure(
        second.extensions["celery"], names[1]
    )
    # Dash's process-wide registries did not grow, so no later app inherits these.
    assert registry == (
        len(BaseBackgroundCallbackManager.managers),
        len(BaseBackgroundCallbackManager.functions),
    )


def test_dash_pages_are_served_by_the_flask_app(client):
    for path in ("/dash/", "/dash/history"):
        response = client.get(path)
        assert response.status_code == 200 and b"_dash-config" in response.data
    layout = client.get("/dash/_dash-layout").get_json()
    assert "url" in json.dumps(layout)


def test_grid_block_pages_and_sorts_on_the_server(app):
    with app.app_context():
        store = get_store()
        store.commit_run("r1", [(5.0, "alpha"), (1.0, "beta"), (3.0, "gamma")])
        store.commit_run("r2", [(4.0, "delta"), (2.0, "alpha")])
        newest = data.grid_block({"startRow": 0, "endRow": 2})
        assert newest["rowCount"] == 5
        assert [r["id"] for r in newest["rowData"]] == [5, 4]
        by_value = data.grid_block(
            {
                "startRow": 1,
                "endRow": 4,
                "sortModel": [{"colId": "value", "sort": "asc"}],
            }
        )
        assert [r["value"] for r in by_value["rowData"]] == [2.0, 3.0, 4.0]
        oldest = data.grid_block(
            {"startRow": 0, "endRow": 1, "sortModel": [{"colId": "created_at"}]}
        )
        assert oldest["rowData"][0]["id"] == 5  # no direction given: the default
        # A hostile request cannot ask for the whole data set at once.
        huge = data.grid_block({"startRow": "x", "endRow": 10**12}, max_block=2)
        assert len(huge["rowData"]) == 2


def both_modes(raw):
    return [core.start(raw, mode=mode) for mode in ("background", "queued")]


def active_runs() -> int:
    return Run.query.filter(Run.state.in_(ACTIVE_STATES)).count()


def test_invalid_form_values_get_field_messages_and_start_nothing(app):
    with as_user(app):
        for started in both_modes({"rows": "0", "seconds": "later"}):
            assert not started.ok and started.run is None
            assert started.field_errors == {
                "rows": "must be at least 1",
                "seconds": "must be a number",
            }
        assert active_runs() == 0
        # Empty fields mean the definition's defaults.
        started = core.start({"rows": "", "seconds": ""}, mode="background")
        assert started.run.params == {"rows": 10, "seconds": 5.0}
        assert started.run.source == "dash-background"


def test_unreachable_broker_is_said_not_hidden(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with as_user(app):
        background, queued = both_modes({"rows": "1"})
        assert not background.ok and "broker is unreachable" in background.message
        assert queued.ok and queued.run.state == "PENDING"
        line = core.describe(runs.get_run(queued.run.id), mode="queued")
        assert line.startswith("PENDING") and "waiting for the broker" in line


def test_every_limit_applies_to_both_modes(make_app):
    app = make_app(MAX_ACTIVE_RUNS=1)
    with as_user(app):
        pending_run("generate_data", {}, source="api")
        for started in both_modes({"rows": "1"}):
            assert not started.ok and "already active" in started.message
    # One generate_data run is active already; two more fill its share.
    app = make_app(MAX_ACTIVE_RUNS=10, MAX_ACTIVE_RUNS_PER_TASK=3)
    with as_user(app):
        for started in both_modes({"rows": "1"}):
            assert started.ok
        for started in both_modes({"rows": "1"}):
            assert "3 runs of generate_data are already active" in started.message


def test_describe_each_outcome(app):
    with app.app_context():
        run = pending_run("generate_data", {"rows": 2}, source="dash-queued")
        runs.fail_run(run.id, "ResponseError", "value is not an integer")
        assert core.describe(runs.get_run(run.id), mode="queued") == (
            f"FAILURE: queued run {run.id[:8]}: ResponseError: value is not an integer"
        )
        other = pending_run("generate_data", {}, source="dash-queued")
        runs.revoke_run(other, cancelled_by=None)
        assert core.describe(other, mode="queued").startswith("REVOKED")
        assert core.describe(None, mode="queued").startswith("FAILURE")


def test_background_work_runs_the_admitted_run_only(app):
    """What the background callback does in the worker, called directly."""
    seen = []
    with as_user(app):
        admitted = core.start({"rows": "3", "seconds": "0"}, mode="background").run
        run = core.execute_background(
            admitted.id, worker="test", on_progress=lambda *p: seen.append(p)
        )
        assert run.state == "SUCCESS" and run.source == "dash-background"
        assert get_store().run_span(run.id) == (1, 3)
        assert seen[-1] == (3, 3, "3 of 3 rows")
        # A redelivered job finds its finished run and appends nothing more.
        again = core.execute_background(
            admitted.id, worker="test", on_progress=lambda *p: None
        )
        assert again.state == "SUCCESS" and get_store().total() == 3
        # A run id nobody admitted is not adopted: nothing runs, nothing is recorded.
        assert core.execute_background("forged", worker="t", on_progress=print) is None
        assert runs.get_run("forged") is None
        other = pending_run("generate_data", {}, source="api")
        assert core.execute_background(other.id, worker="t", on_progress=print) is None
        assert runs.get_run(other.id).state == "PENDING"


def test_terminated_background_job_ends_its_run_revoked(app):
    celery_app = app.extensions["celery"]
    manager = app.extensions["dash"]._background_manager
    job = celery_app.tasks[manager.job_names()[0]]
    with app.app_context():
        run = pending_run("generate_data", {}, source="dash-background")
        other = SimpleNamespace(app=object(), name=job.name)
        # Dash calls a job with (result_key, progress_key, [inputs], context).
        request = SimpleNamespace(id="job-id", args=("r", "p", [{"run_id": run.id}]))
        manager.on_task_revoked(sender=other, request=request)
        assert runs.get_run(run.id).state == "PENDING"  # another app's job: not ours
        manager.on_task_revoked(sender=job, request=request)
        db.session.expire_all()  # the receiver wrote in its own app context
        assert runs.get_run(run.id).state == "REVOKED"


def test_set_props_are_read_once_and_the_result_is_kept(app):
    manager = app.extensions["dash"]._background_manager
    backend = app.extensions["celery"].backend
    backend.set("k", json.dumps({"done": True}))
    backend.set("k-set_props", json.dumps({"app-status": {"children": "x"}}))
    assert manager.get_updated_props("k") == {"app-status": {"children": "x"}}
    assert manager.get_updated_props("k") == {}
    assert manager.result_ready("k")  # upstream deletes the result here


def test_history_filters_and_chart(app, worker, client):
    with app.app_context():
        for source in ("api", "beat", "dash-queued"):
            pending_run("summarize_data", {}, source=source)
    started = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 1, "seconds": 0}
    )
    wait_for(lambda: client.get(started.headers["Location"]).json["state"] == "SUCCESS")
    with app.app_context():
        everything = history.history({"state": None, "source": None, "task": None})
        assert len(everything) == 4 and history.any_active(everything)
        beat = history.history({"source": "beat"})
        assert [r.source for r in beat] == ["beat"]
        rows = history.history_rows(history.history({"state": "SUCCESS"}))
        assert rows[0]["params"] == "rows=1, seconds=0.0" and rows[0]["duration_s"]
        figure = history.duration_figure(everything)
        traces = {t.name: len(t.y) for t in figure.data}
        assert traces == {"SUCCESS": 1, "FAILURE": 0, "REVOKED": 0}


def test_schedule_line_names_interval_and_last_beat_run(make_app):
    app = make_app()
    with app.app_context():
        assert data.schedule_line().startswith("No schedule starts generate_data")
    add_schedule(app, 30)
    with app.app_context():
        assert data.schedule_line() == (
            "Scheduled: generate_data every 30 s (generate-data). "
            "No scheduled run has finished yet."
        )
        pending_run("generate_data", {}, source="beat")  # still PENDING
        beat = pending_run("generate_data", {"rows": 1}, source="beat")
        runs.fail_run(beat.id, "X", "y")
        assert "Last scheduled run finished" in data.schedule_line()
        assert "FAILURE" in data.schedule_line()


def test_queued_poll_starts_fast_backs_off_with_age_and_slows_for_slow_polls():
    from datetime import timedelta

    from myapp.dashboard.core import poll_interval_ms
    from myapp.models import Run, utcnow

    fresh = Run(created_at=utcnow())
    old = Run(created_at=utcnow() - timedelta(minutes=5))
    assert poll_interval_ms(fresh, took_ms=5) == 100
    assert poll_interval_ms(old, took_ms=5) == 1000
    # A poll that took 0.8 s waits three times as long, so no response is dropped.
    assert poll_interval_ms(fresh, took_ms=800) == 2400
    assert poll_interval_ms(None, took_ms=5000) == 5000


# -- the task pages' form and result view ------------------------------------------


def _as_sent(components):
    """Components as the renderer sends them back: their JSON."""
    return json.loads(json.dumps(components, cls=plotly.utils.PlotlyJSONEncoder))


def _set(tree, control_id, **props):
    """Change one control's props in a sent tree, as a user's typing does."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict) and isinstance(node.get("props"), dict):
            if node["props"].get("id") == control_id:
                node["props"].update(props)
            stack.append(node["props"].get("children"))


def test_a_task_form_is_read_back_from_its_controls(make_app):
    app = make_app(TASK_MODULES="tests.dash_result_tasks")
    with app.app_context():
        definition = get_definition("every_kind")
        fields = forms.fields_of(definition, forms.TASK_FORM)
        tree = _as_sent(forms.form_controls(definition, disabled=False))
        # Untouched, the form holds the defaults (label is required).
        with pytest.raises(ValidationError) as refused:
            definition.validate(forms.read_form(tree, fields), from_text=True)
        assert refused.value.fields == {"label": "is required"}
        for name, props in (
            ("label", {"value": " ada "}),
            ("loud", {"value": ["true"]}),
            ("colour", {"value": "green"}),
            ("day", {"date": "2026-02-01"}),
            ("sizes", {"value": "1, 2"}),
            ("ratio", {"value": ""}),
        ):
            _set(tree, ids.param_id(name), **props)
        params = definition.validate(forms.read_form(tree, fields), from_text=True)
        assert params == {
            "label": "ada",
            "count": 2,
            "ratio": 0.5,
            "loud": True,
            "colour": "green",
            "day": "2026-02-01",
            "at": None,
            "sizes": [1, 2],
        }
        # Hints say what to type, in words.
        assert definition.field("count").hint == (
            "Whole number from 1 to 5. Default: 2."
        )
        assert definition.field("label").hint.endswith("Required.")


def _ids(view):
    return [getattr(part, "id", type(part).__name__) for part in view]


def test_result_views_by_the_shape_of_the_result():
    figure = {"data": [{"type": "bar", "x": [1], "y": [2]}], "layout": {}}
    table = [{"category": "alpha", "count": 3}]
    assert _ids(results.result_view({"table": table, "figure": figure})) == [
        ids.RESULT_GRAPH,
        ids.RESULT_GRID,
    ]
    assert _ids(results.result_view({"table": table, "total": 3})) == [
        ids.RESULT_GRID,
        "H3",
        "Pre",
    ]
    for other in ([1, 2], {"table": "not rows"}, {"figure": 3}, "text"):
        assert _ids(results.result_view(other)) == ["Pre"], other
    # A task that returned nothing says so in words, not as `null`.
    assert _ids(results.result_view(None)) == ["P"]
