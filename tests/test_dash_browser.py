"""The Dash pages in headless Chromium against the real app: a real Redis, a real
database and a real Celery worker (an embedded solo worker, or a prefork worker
process started from wsgi.py where Dash's terminate-on-cancel needs one)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from celery.beat import Scheduler
from conftest import free_port, pending_run, wait_for
from dash.testing.browser import Browser
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.common.by import By
from werkzeug.serving import make_server

from myapp import runs
from myapp.dashboard import ids
from myapp.extensions import get_store
from myapp.models import SOURCES, Run
from tests.faults.procs import Worker

CHROME_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--window-size=1280,900",
)


@pytest.fixture
def dash_duo() -> Iterator[Browser]:
    """dash.testing's browser on headless Chromium (Debian's chromium-driver)."""
    options = Options()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    with Browser(
        "chrome", headless=True, options=[options], percy_run=False, wait_timeout=30
    ) as browser:
        yield browser


def serve(app) -> Iterator[str]:
    """The whole Flask app (Dash mounted) on a free port, threaded like production."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def live(app, worker) -> Iterator[str]:
    yield from serve(app)


def open_main(dash_duo: Browser, base: str) -> None:
    dash_duo.driver.get(base + "/dash/")
    dash_duo.wait_for_element_by_id(ids.RUN_BUTTON)
    dash_duo.wait_for_text_to_equal(f"#{ids.DATA_TOTAL}", "0")


def fill_and_run(dash_duo: Browser, rows: str, seconds: str, mode: str) -> None:
    for input_id, value in ((ids.ROWS_INPUT, rows), (ids.SECONDS_INPUT, seconds)):
        element = dash_duo.find_element(f"#{input_id}")
        dash_duo.clear_input(element)
        element.send_keys(value)
    dash_duo.find_element(f"#{ids.MODE_SELECT} input[value='{mode}']").click()
    dash_duo.find_element(f"#{ids.RUN_BUTTON}").click()


def status(dash_duo: Browser) -> str:
    return dash_duo.find_element(f"#{ids.APP_STATUS}").text


def wait_status(dash_duo: Browser, prefix: str, timeout: float = 40) -> str:
    return wait_for(
        lambda: status(dash_duo) if status(dash_duo).startswith(prefix) else None,
        timeout,
        0.1,
    )


def progress(dash_duo: Browser) -> tuple[int, int]:
    bar = dash_duo.find_element(f"#{ids.RUN_PROGRESS}")
    return int(float(bar.get_attribute("value"))), int(float(bar.get_attribute("max")))


def grid_row_count(dash_duo: Browser) -> int:
    """Rows the grid knows it has (it renders only those in view)."""
    return dash_duo.driver.execute_script(
        f"return dash_ag_grid.getApi('{ids.DATA_GRID}').getDisplayedRowCount()"
    )


def grid_top_row(dash_duo: Browser) -> str:
    rows = dash_duo.driver.find_elements(
        By.CSS_SELECTOR, f"#{ids.DATA_GRID} .ag-center-cols-container .ag-row"
    )
    return rows[0].text if rows else ""


def dash_runs(app, source: str) -> list[Run]:
    with app.app_context():
        items, _ = runs.list_runs(runs.RunFilter(source=source), limit=10)
        return items


@pytest.mark.parametrize("mode", ["background", "queued"])
def test_run_moves_progress_then_succeeds_and_grid_grows(app, live, dash_duo, mode):
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "6", "3", mode)

    # Mid-run: the bar has moved but not finished, and only cancel is enabled.
    mid = wait_for(lambda: 0 < progress(dash_duo)[0] < 6, 30, 0.05)
    assert mid and progress(dash_duo)[1] == 6
    assert dash_duo.find_element(f"#{ids.RUN_BUTTON}").get_attribute("disabled")

    done = wait_status(dash_duo, "SUCCESS")
    assert f"{mode} run" in done and "appended 6 rows" in done
    assert progress(dash_duo) == (6, 6)
    dash_duo.wait_for_text_to_equal(f"#{ids.DATA_TOTAL}", "6")
    wait_for(lambda: grid_row_count(dash_duo) == 6, 20, 0.1)
    (run,) = dash_runs(app, f"dash-{mode}")
    wait_for(lambda: run.id[:8] in grid_top_row(dash_duo))
    assert not dash_duo.find_element(f"#{ids.RUN_BUTTON}").get_attribute("disabled")

    assert run.state == "SUCCESS" and run.params == {"rows": 6, "seconds": 3.0}
    with app.app_context():
        assert get_store().run_span(run.id) == (1, 6)


def test_queued_cancel_ends_revoked_and_history_says_so(app, live, dash_duo):
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "5", "30", "queued")
    wait_for(lambda: progress(dash_duo)[1] == 5 and status(dash_duo).startswith("PROG"))
    dash_duo.find_element(f"#{ids.CANCEL_BUTTON}").click()
    assert "was cancelled" in wait_status(dash_duo, "REVOKED")
    (run,) = dash_runs(app, "dash-queued")
    assert run.state == "REVOKED"
    dash_duo.driver.get(live + "/dash/history")
    dash_duo.wait_for_contains_text(f"#{ids.HISTORY_GRID}", "REVOKED")


def test_failing_run_shows_its_error(app, live, dash_duo):
    open_main(dash_duo, live)
    with app.app_context():
        # A corrupt data set: the append fails inside Redis, a real task failure.
        get_store().redis.set(get_store().key("seq"), "not-a-number")
    fill_and_run(dash_duo, "3", "0", "background")
    failed = wait_status(dash_duo, "FAILURE")
    assert "ResponseError" in failed and "not an integer" in failed
    (run,) = dash_runs(app, "dash-background")
    assert run.state == "FAILURE" and run.error_type == "ResponseError"


def test_invalid_input_shows_field_messages_and_starts_nothing(app, live, dash_duo):
    open_main(dash_duo, live)
    for mode in ("background", "queued"):
        fill_and_run(dash_duo, "0", "soon", mode)
        dash_duo.wait_for_text_to_equal(f"#{ids.ROWS_ERROR}", "must be at least 1")
        dash_duo.wait_for_text_to_equal(f"#{ids.SECONDS_ERROR}", "must be a number")
        assert status(dash_duo).startswith("Not started")
        fill_and_run(dash_duo, "1", "0", mode)
        dash_duo.wait_for_text_to_equal(f"#{ids.ROWS_ERROR}", "")
        wait_status(dash_duo, "SUCCESS")
        fill_and_run(dash_duo, "", "-1", mode)
        dash_duo.wait_for_text_to_equal(f"#{ids.SECONDS_ERROR}", "must be at least 0")
    with app.app_context():
        started = runs.list_runs(runs.RunFilter(), limit=10)[0]
    # Only the two valid submissions became runs.
    assert [(r.params, r.state) for r in started] == [
        ({"rows": 1, "seconds": 0.0}, "SUCCESS")
    ] * 2


def test_scheduled_run_appears_in_grid_without_reload(app, live, dash_duo):
    open_main(dash_duo, live)
    dash_duo.wait_for_contains_text(f"#{ids.SCHEDULE_INFO}", "every 90 s")
    # Send the schedule entry exactly as beat does (its task, kwargs and headers).
    scheduler = Scheduler(app=app.extensions["celery"], lazy=True)
    scheduler.setup_schedule()
    scheduler.apply_entry(scheduler.schedule["generate-data"], producer=None)
    dash_duo.wait_for_text_to_equal(f"#{ids.DATA_TOTAL}", "10", timeout=40)
    wait_for(lambda: grid_row_count(dash_duo) == 10, 20, 0.1)
    (run,) = dash_runs(app, "beat")
    assert run.state == "SUCCESS"
    wait_for(lambda: run.id[:8] in grid_top_row(dash_duo))
    dash_duo.wait_for_contains_text(
        f"#{ids.SCHEDULE_INFO}", "Last scheduled run finished", timeout=20
    )


def test_history_lists_runs_from_every_source(app, live, dash_duo, client):
    with app.app_context():
        for source in SOURCES:
            pending_run("summarize_data", {}, source=source)
    done = client.post("/api/tasks/generate_data/runs", json={"rows": 2, "seconds": 0})
    wait_for(lambda: client.get(done.headers["Location"]).json["state"] == "SUCCESS")

    dash_duo.driver.get(live + "/dash/history")
    for source in SOURCES:
        dash_duo.wait_for_contains_text(f"#{ids.HISTORY_GRID}", source)
    dash_duo.wait_for_element(f"#{ids.HISTORY_CHART} .scatterlayer .point")

    dash_duo.select_dcc_dropdown(f"#{ids.HISTORY_SOURCE}", value="beat")
    wait_for(
        lambda: "dash-queued" not in dash_duo.find_element(f"#{ids.HISTORY_GRID}").text
    )
    assert "beat" in dash_duo.find_element(f"#{ids.HISTORY_GRID}").text


def test_page_fits_a_phone(app, live, dash_duo):
    dash_duo.driver.set_window_size(390, 844)
    open_main(dash_duo, live)
    width = dash_duo.driver.execute_script(
        "return document.documentElement.scrollWidth"
    )
    viewport = dash_duo.driver.execute_script("return window.innerWidth")
    assert width <= viewport
    bar = dash_duo.find_element(f"#{ids.RUN_PROGRESS}")
    assert bar.tag_name == "progress" and bar.size["width"] > 0.8 * viewport - 60


# -- a prefork worker process built from wsgi.py, like production ---------------------


@pytest.fixture
def prefork_worker(app, tmp_path) -> Iterator[None]:
    worker = Worker(app, f"dash-prefork-{free_port()}", tmp_path, concurrency=1)
    worker.start()
    try:
        app.config["PREFORK_WORKER"] = f"{worker.name}@{socket.gethostname()}"
        yield
    finally:
        worker.stop()


def test_worker_from_wsgi_registers_every_background_callback(app, prefork_worker):
    celery_app = app.extensions["celery"]
    hostname = app.config["PREFORK_WORKER"]
    registered = celery_app.control.inspect(destination=[hostname], timeout=5)
    names = set(registered.registered()[hostname])
    expected = set(app.extensions["dash"]._background_manager.job_names())
    assert expected and expected <= names


@pytest.fixture
def live_prefork(app, prefork_worker) -> Iterator[str]:
    yield from serve(app)


def test_background_cancel_terminates_the_job_and_ends_revoked(
    app, live_prefork, dash_duo
):
    base = live_prefork
    open_main(dash_duo, base)
    fill_and_run(dash_duo, "5", "30", "background")
    wait_for(lambda: status(dash_duo).startswith("STARTED"), 40, 0.1)
    wait_for(lambda: progress(dash_duo)[1] == 5, 20, 0.1)
    dash_duo.find_element(f"#{ids.CANCEL_BUTTON}").click()
    assert "was cancelled" in wait_status(dash_duo, "REVOKED")
    # The run button comes back: the page is not left waiting for the killed job.
    wait_for(
        lambda: (
            not dash_duo.find_element(f"#{ids.RUN_BUTTON}").get_attribute("disabled")
        )
    )
    (run,) = dash_runs(app, "dash-background")
    assert run.state == "REVOKED"
    with app.app_context():
        assert get_store().total() == 0
    dash_duo.driver.get(base + "/dash/history")
    dash_duo.wait_for_contains_text(f"#{ids.HISTORY_GRID}", "REVOKED")
