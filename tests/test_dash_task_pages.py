"""The Dash task pages (/dash/tasks, /dash/tasks/<name>) in headless Chromium against
the real app: real Redis, database and Celery worker, as test_dash_browser.py.

The app has the built-in tasks and those of tests/dash_result_tasks.py (one whose
result is a table and a figure, one with a parameter of every kind)."""

from __future__ import annotations

import pytest
import test_dash_browser as main_page_tests
from dash.testing.browser import Browser
from selenium.webdriver.common.by import By

from myapp.dashboard import ids
from myapp.extensions import get_store
from tests.support import BROWSER_PASSWORD, add_schedule, sign_in, wait_for

# tests/log_tasks.py: a task that writes to its run's log while it holds.
TASK_MODULES = "tests.dash_result_tasks,tests.log_tasks"

# The main page's fixtures: the browser, and the app served with an admin signed in.
dash_duo = main_page_tests.dash_duo
live = main_page_tests.live
dash_runs = main_page_tests.dash_runs
status = main_page_tests.status
wait_status = main_page_tests.wait_status
progress = main_page_tests.progress
# A prefork worker process built from wsgi.py: Dash terminates a cancelled job.
prefork_worker = main_page_tests.prefork_worker
live_prefork = main_page_tests.live_prefork


@pytest.fixture
def app(make_app):
    return make_app(TASK_MODULES=TASK_MODULES)


def open_task(dash_duo: Browser, base: str, name: str) -> None:
    dash_duo.driver.get(f"{base}/dash/tasks/{name}")
    dash_duo.wait_for_element_by_id(ids.RUN_BUTTON)
    dash_duo.wait_for_text_to_equal(f"#{ids.PAGE} h1", name)


def type_into(dash_duo: Browser, name: str, value: str) -> None:
    element = dash_duo.find_element(f"#{ids.param_id(name)}")
    dash_duo.clear_input(element)
    element.send_keys(value)


def pick(dash_duo: Browser, name: str, *values: str) -> None:
    """Choose options of a (multi-)dropdown: its menu stays open between them."""
    dash_duo.find_element(f"#{ids.param_id(name)}").click()
    for value in values:
        menu = dash_duo.find_element(".dash-dropdown-options")
        option = next(
            o
            for o in menu.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option")
            if o.text == value
        )
        option.click()
    dash_duo.find_element(f"#{ids.PAGE} h1").click()  # close the menu


def run(dash_duo: Browser, mode: str) -> None:
    dash_duo.find_element(f"#{ids.MODE_SELECT} input[value='{mode}']").click()
    dash_duo.find_element(f"#{ids.RUN_BUTTON}").click()


def disabled(dash_duo: Browser, selector: str) -> bool:
    return bool(dash_duo.find_element(selector).get_attribute("disabled"))


def test_tasks_page_lists_every_task_and_links_to_its_page(app, live, dash_duo):
    dash_duo.driver.get(live + "/dash/")
    dash_duo.wait_for_element_by_id(ids.RUN_BUTTON)
    # The Dash pages link to the list of tasks.
    dash_duo.find_element(".dash-nav a[href='/dash/tasks']").click()
    dash_duo.wait_for_element_by_id(ids.TASK_LIST)
    listed = dash_duo.find_element(f"#{ids.TASK_LIST}").text
    for name, role in (
        ("generate_data", "operator"),
        ("summarize_data", "operator"),
        ("prune_runs", "admin"),
        ("tabulate", "operator"),
        ("every_kind", "admin"),
    ):
        row = dash_duo.find_element(f"#{ids.TASK_LIST} a[href='/dash/tasks/{name}']")
        line = row.find_element(By.XPATH, "./ancestor::tr").text
        assert role in line, line
    assert "Count per category, as a table and a bar chart." in listed

    dash_duo.find_element(f"#{ids.TASK_LIST} a[href='/dash/tasks/tabulate']").click()
    dash_duo.wait_for_text_to_equal(f"#{ids.PAGE} h1", "tabulate")
    assert dash_duo.driver.current_url.endswith("/dash/tasks/tabulate")
    for name in ("categories", "include_chart"):
        dash_duo.wait_for_element_by_id(ids.param_id(name))


def test_a_task_page_lists_its_schedules_with_their_next_fire(app, live, dash_duo):
    add_schedule(app, 3600, name="nightly-summary", task="summarize_data")
    open_task(dash_duo, live, "summarize_data")
    listed = dash_duo.find_element(f"#{ids.TASK_SCHEDULES}")
    assert "nightly-summary" in listed.text and "next: " in listed.text
    open_task(dash_duo, live, "tabulate")
    assert "Nothing starts this task on a schedule" in (
        dash_duo.find_element(f"#{ids.TASK_SCHEDULES}").text
    )


def test_unknown_task_and_unknown_page_say_so(app, live, dash_duo):
    dash_duo.driver.get(live + "/dash/tasks/nope")
    dash_duo.wait_for_contains_text(f"#{ids.PAGE}", "There is no task named 'nope'")
    assert not dash_duo.driver.find_elements(By.ID, ids.RUN_BUTTON)
    dash_duo.driver.get(live + "/dash/elsewhere")
    dash_duo.wait_for_contains_text(f"#{ids.PAGE}", "There is no Dash page at")
    assert not dash_duo.driver.find_elements(By.ID, ids.RUN_BUTTON)


@pytest.mark.parametrize("mode", ["background", "queued"])
def test_summarize_data_runs_in_both_modes_and_shows_its_result(
    app, live, dash_duo, mode
):
    with app.app_context():
        get_store().commit_run("seed", [(1.0, "alpha"), (3.0, "alpha"), (2.0, "beta")])
    open_task(dash_duo, live, "summarize_data")
    dash_duo.select_dcc_dropdown(f"#{ids.param_id('category')}", value="alpha")
    run(dash_duo, mode)
    done = wait_status(dash_duo, "Finished")
    assert f"{mode} run" in done and "of summarize_data" in done
    view = dash_duo.find_element(f"#{ids.RESULT_VIEW}")
    wait_for(lambda: '"count": 2' in view.text)
    assert '"mean": 2.0' in view.text
    (started,) = dash_runs(app, f"dash-{mode}")
    assert started.state == "SUCCESS" and started.params == {"category": "alpha"}
    # The task's runs list it, linked to its page.
    link = f"#{ids.TASK_RUNS_GRID} a[href='/runs/{started.id}']"
    wait_for(lambda: dash_duo.driver.find_elements(By.CSS_SELECTOR, link))
    assert not disabled(dash_duo, f"#{ids.RUN_BUTTON}")


@pytest.mark.parametrize("mode", ["background", "queued"])
def test_the_run_log_comes_in_live(app, live, dash_duo, mode):
    open_task(dash_duo, live, "chatty")
    type_into(dash_duo, "lines", "2")
    type_into(dash_duo, "hold", "4")
    run(dash_duo, mode)

    def log() -> str:
        return dash_duo.find_element(f"#{ids.RUN_LOG}").text

    # The lines come while the task still holds, then the last ones, in order.
    wait_for(lambda: "line 2" in log(), timeout=15)
    assert "Finished" not in status(dash_duo)
    wait_for(lambda: "WARNING done" in log(), timeout=30)
    text = log()
    assert text.index("line 1") < text.index("line 2") < text.index("caught")
    assert "ERROR caught (ValueError: it broke)" in text


def test_a_table_and_a_figure_show_as_grid_and_chart(app, live, dash_duo):
    open_task(dash_duo, live, "tabulate")
    pick(dash_duo, "categories", "beta", "gamma")
    run(dash_duo, "queued")
    wait_status(dash_duo, "Finished")
    dash_duo.wait_for_element(f"#{ids.RESULT_GRAPH} .main-svg")
    grid = f"#{ids.RESULT_GRID} .ag-center-cols-container .ag-row"
    wait_for(lambda: len(dash_duo.driver.find_elements(By.CSS_SELECTOR, grid)) == 2)
    assert "beta" in dash_duo.find_element(f"#{ids.RESULT_GRID}").text
    # What else the result holds is shown as JSON.
    assert '"total": 7' in dash_duo.find_element(f"#{ids.RESULT_VIEW}").text
    (started,) = dash_runs(app, "dash-queued")
    assert started.params == {"categories": ["beta", "gamma"], "include_chart": True}

    # Without the chart: the grid alone, in background mode.
    dash_duo.find_element(f"#{ids.param_id('include_chart')} input").click()
    run(dash_duo, "background")
    wait_for(lambda: len(dash_runs(app, "dash-background")) == 1)
    wait_status(dash_duo, "Finished")
    wait_for(lambda: not dash_duo.driver.find_elements(By.ID, ids.RESULT_GRAPH))
    dash_duo.wait_for_element(f"#{ids.RESULT_GRID}")
    (again,) = dash_runs(app, "dash-background")
    assert again.params["include_chart"] is False


def test_bad_values_show_field_messages_and_start_nothing(app, live, dash_duo):
    open_task(dash_duo, live, "every_kind")
    type_into(dash_duo, "count", "9")
    type_into(dash_duo, "ratio", "half")
    type_into(dash_duo, "sizes", "1,x")
    for mode in ("background", "queued"):
        run(dash_duo, mode)
        for name, message in (
            ("label", "Label is required"),
            ("count", "Count must be at most 5"),
            ("ratio", "Ratio must be a number"),
            ("sizes", "Sizes item 2: must be an integer"),
        ):
            dash_duo.wait_for_text_to_equal(f"#{ids.param_error_id(name)}", message)
        refused = status(dash_duo)
        assert refused.startswith("Not started")
        assert "count must be at most 5" in refused
    assert dash_runs(app, "dash-background") == dash_runs(app, "dash-queued") == []

    # Editing a field clears its message; the others stay until the next click.
    type_into(dash_duo, "count", "3")
    dash_duo.wait_for_text_to_equal(f"#{ids.param_error_id('count')}", "")
    assert dash_duo.find_element(f"#{ids.param_error_id('ratio')}").text
    type_into(dash_duo, "label", "ada")
    type_into(dash_duo, "ratio", "0.25")
    type_into(dash_duo, "sizes", "1, 2")
    dash_duo.find_element(f"#{ids.param_id('loud')} input").click()
    run(dash_duo, "queued")
    wait_status(dash_duo, "Finished")
    for name in ("label", "count", "ratio", "sizes"):
        assert dash_duo.find_element(f"#{ids.param_error_id(name)}").text == ""
    (started,) = dash_runs(app, "dash-queued")
    assert started.params == {
        "label": "ada",
        "count": 3,
        "ratio": 0.25,
        "loud": True,
        "colour": "red",
        "day": "2026-01-31",
        "at": None,
        "sizes": [1, 2],
    }
    assert '"label": "ADA"' in dash_duo.find_element(f"#{ids.RESULT_VIEW}").text


def test_a_queued_run_of_a_task_page_can_be_cancelled(app, live, dash_duo):
    open_task(dash_duo, live, "generate_data")
    type_into(dash_duo, "rows", "5")
    type_into(dash_duo, "seconds", "30")
    run(dash_duo, "queued")
    wait_status(dash_duo, "Running")
    assert disabled(dash_duo, f"#{ids.RUN_BUTTON}")
    dash_duo.find_element(f"#{ids.CANCEL_BUTTON}").click()
    assert "was cancelled" in wait_status(dash_duo, "Cancelled")
    dash_duo.wait_for_contains_text(f"#{ids.RESULT_VIEW}", "cancelled")
    (started,) = dash_runs(app, "dash-queued")
    assert started.state == "REVOKED"


def test_a_background_run_of_a_task_page_shows_progress_and_can_be_cancelled(
    app, live_prefork, dash_duo
):
    open_task(dash_duo, live_prefork, "generate_data")
    type_into(dash_duo, "rows", "5")
    type_into(dash_duo, "seconds", "30")
    run(dash_duo, "background")
    wait_status(dash_duo, "Running")
    wait_for(lambda: progress(dash_duo)[1] == 5 and progress(dash_duo)[0] > 0, 40)
    dash_duo.find_element(f"#{ids.CANCEL_BUTTON}").click()
    assert "was cancelled" in wait_status(dash_duo, "Cancelled")
    wait_for(lambda: not disabled(dash_duo, f"#{ids.RUN_BUTTON}"))
    (started,) = dash_runs(app, "dash-background")
    assert started.state == "REVOKED"
    with app.app_context():
        assert get_store().total() == 0


@pytest.mark.parametrize(
    ("role", "task"), [("viewer", "summarize_data"), ("operator", "every_kind")]
)
def test_a_user_who_may_not_start_sees_disabled_controls_and_why(
    app, live, dash_duo, make_user, role, task
):
    name, _ = make_user(role, password=BROWSER_PASSWORD)
    sign_in(dash_duo.driver, live, name, BROWSER_PASSWORD)
    open_task(dash_duo, live, task)
    reason = dash_duo.find_element(f"#{ids.START_REASON}").text
    needed = "operator" if task == "summarize_data" else "admin"
    assert f"needs the {needed} role" in reason and f"({role})" in reason
    assert disabled(dash_duo, f"#{ids.RUN_BUTTON}")
    for radio in dash_duo.driver.find_elements(
        By.CSS_SELECTOR, f"#{ids.MODE_SELECT} input"
    ):
        assert radio.get_attribute("disabled")
    first = "category" if task == "summarize_data" else "label"
    control = dash_duo.find_element(f"#{ids.param_id(first)}")
    assert control.get_attribute("disabled") or control.find_elements(
        By.CSS_SELECTOR, "[disabled], [aria-disabled='true']"
    )
    # The page still shows the task's runs.
    dash_duo.wait_for_element_by_id(ids.TASK_RUNS_GRID)
