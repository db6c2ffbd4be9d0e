"""The Dash pages in headless Chromium against the real app: a real Redis, a real
database and a real Celery worker (an embedded solo worker, or a prefork worker
process started from wsgi.py where Dash's terminate-on-cancel needs one)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from dash.testing.browser import Browser
from selenium.webdriver.common.by import By
from werkzeug.serving import make_server

from myapp import runs
from myapp.dashboard import ids
from myapp.extensions import get_store
from myapp.models import SOURCES, Run
from myapp.schedules.sender import ScheduleSender
from tests.support import (
    BROWSER_PASSWORD,
    Worker,
    add_schedule,
    chrome_options,
    free_port,
    pending_run,
    sign_in,
    wait_for,
)


@pytest.fixture
def dash_duo() -> Iterator[Browser]:
    """dash.testing's browser on headless Chromium (Debian's chromium-driver)."""
    with Browser(
        "chrome",
        headless=True,
        options=[chrome_options()],
        percy_run=False,
        wait_timeout=30,
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
def live(app, worker, dash_duo, browser_login) -> Iterator[str]:
    """The app served, and the browser signed in as an admin."""
    for base in serve(app):
        sign_in(dash_duo.driver, base, *browser_login)
        yield base


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


def job_polls(dash_duo: Browser) -> list[float]:
    """Start times (ms) of the page's polls of a background job since the last
    `performance.clearResourceTimings()`."""
    return dash_duo.driver.execute_script(
        """
        return performance.getEntriesByType('resource')
            .filter((e) => /_dash-update-component\\?(.*&)?job=/.test(e.name))
            .map((e) => e.startTime);
        """
    )


def test_background_polls_back_off_as_the_run_ages(app, live, dash_duo):
    open_main(dash_duo, live)
    dash_duo.driver.execute_script(
        "performance.setResourceTimingBufferSize(5000); "
        "performance.clearResourceTimings();"
    )
    fill_and_run(dash_duo, "5", "10", "background")
    assert "appended 5 rows" in wait_status(dash_duo, "SUCCESS")
    polls = job_polls(dash_duo)
    # Every 100 ms for ten seconds would be about 80 polls (less the answers' own
    # time); backing off to a tenth of the job's age, capped at 1 s, about 35.
    assert 5 < len(polls) < 50


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
    add_schedule(app, 90)
    open_main(dash_duo, live)
    # The line reads the schedule's row (users edit it), not a setting.
    dash_duo.wait_for_contains_text(
        f"#{ids.SCHEDULE_INFO}", "generate_data every 90 s (generate-data)"
    )
    # Send the schedule's fire exactly as beat does (its task, kwargs and headers).
    ScheduleSender(app, max_delay=5).tick()
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


def test_flask_and_dash_pages_share_one_navigation_bar(app, live, dash_duo):
    """The same links, in the same order, drawn by the same stylesheet."""
    seen = {}
    for path in ("/", "/runs", "/dash/", "/dash/history"):
        dash_duo.driver.get(live + path)
        dash_duo.wait_for_element("header.site nav a")
        if path.startswith("/dash/"):
            dash_duo.wait_for_element(f"#{ids.PAGE} h1")
        seen[path] = dash_duo.driver.execute_script(
            """
            const header = document.querySelector('header.site');
            const nav = [...header.querySelectorAll('nav a')];
            return {
                links: nav.map((a) => [a.textContent.trim(), a.getAttribute('href')]),
                current: nav.filter((a) => a.getAttribute('aria-current') === 'page')
                    .map((a) => a.getAttribute('href')),
                background: getComputedStyle(header).backgroundColor,
                font: getComputedStyle(document.body).fontFamily,
                footer: !!document.querySelector('footer.site'),
            };
            """
        )
    links = [
        ["myapp", "/"],
        ["Tasks", "/"],
        ["Runs", "/runs"],
        ["Schedules", "/schedules"],
        ["Dash", "/dash/"],
        ["Dash history", "/dash/history"],
        ["API", "/api/docs"],
        ["Tokens", "/tokens"],
    ]
    for path, page in seen.items():
        assert page["links"] == links, path
        assert page["current"] == [path], path  # the page's own link is marked
        assert page["footer"], path
        assert (page["background"], page["font"]) == (
            seen["/"]["background"],
            seen["/"]["font"],
        ), path


# -- a prefork worker process built from wsgi.py, like production ---------------------


@pytest.fixture
def prefork_worker(app, tmp_path) -> Iterator[None]:
    worker = Worker.for_app(app, f"dash-prefork-{free_port()}", tmp_path, 1)
    try:
        app.config["PREFORK_WORKER"] = f"{worker.name}@{socket.gethostname()}"
        yield
    finally:
        worker.kill()


def test_worker_from_wsgi_registers_every_background_callback(app, prefork_worker):
    celery_app = app.extensions["celery"]
    hostname = app.config["PREFORK_WORKER"]
    registered = celery_app.control.inspect(destination=[hostname], timeout=5)
    names = set(registered.registered()[hostname])
    expected = set(app.extensions["dash"]._background_manager.job_names())
    assert expected and expected <= names


@pytest.fixture
def live_prefork(app, prefork_worker, dash_duo, browser_login) -> Iterator[str]:
    for base in serve(app):
        sign_in(dash_duo.driver, base, *browser_login)
        yield base


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


# -- no credentials in Redis ----------------------------------------------------------


def redis_texts(client) -> list[str]:
    """Every value of every key (all types), with kombu's base64 message bodies
    decoded, as text to search."""
    texts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [x for pair in client.hgetall(key).items() for x in pair]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "stream":
            values = [str(entry) for entry in client.xrange(key)]
        else:
            values = []
        texts.append(key)
        for value in values:
            texts.extend(_decoded(value or ""))
    return texts


def _decoded(text: str) -> list[str]:
    """The text, and the bodies of the kombu messages in it (base64 JSON)."""
    found = [text]
    try:
        data = json.loads(text)
    except ValueError:
        return found
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
            encoding = (item.get("properties") or {}).get("body_encoding")
            if encoding == "base64" and isinstance(item.get("body"), str):
                found.append(base64.b64decode(item["body"]).decode(errors="replace"))
    return found


def test_no_cookie_password_or_token_in_redis_during_a_background_run(
    app, live, dash_duo, browser_login, make_user
):
    _, password = browser_login
    _, token = make_user("operator")
    session_cookie = dash_duo.driver.get_cookie("session")["value"]
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "5", "6", "background")
    wait_for(lambda: status(dash_duo).startswith(("STARTED", "PROGRESS")), 40, 0.1)
    wait_for(lambda: 0 < progress(dash_duo)[0] < 5, 30, 0.1)
    # An API call with the token while the job runs.
    assert app.test_client(token=token).get("/api/runs").status_code == 200

    client = redis.Redis.from_url(app.config["REDIS_URL"], decode_responses=True)
    texts = redis_texts(client)
    everything = "\n".join(texts)
    # The scan sees the job's message (the job is running: unacked) and its progress.
    assert "background_callback_" in everything
    assert any('"run_id"' in t for t in texts)
    for secret, what in (
        (session_cookie, "session cookie"),
        (password, "password"),
        (token, "API token"),
    ):
        assert secret not in everything, f"{what} found in Redis"
    assert "Cookie" not in everything and "Authorization" not in everything
    wait_status(dash_duo, "SUCCESS")


# -- roles ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["background", "queued"])
def test_a_viewer_cannot_start_from_dash_and_an_operator_can(
    app, live, dash_duo, make_user, mode
):
    viewer, _ = make_user("viewer", password=BROWSER_PASSWORD)
    sign_in(dash_duo.driver, live, viewer, BROWSER_PASSWORD)
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "2", "0", mode)
    refused = wait_status(dash_duo, "Not started")
    assert "needs the operator role" in refused
    assert dash_runs(app, f"dash-{mode}") == []

    operator, _ = make_user("operator", password=BROWSER_PASSWORD)
    sign_in(dash_duo.driver, live, operator, BROWSER_PASSWORD)
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "2", "0", mode)
    wait_status(dash_duo, "SUCCESS")
    (run,) = dash_runs(app, f"dash-{mode}")
    assert run.created_by == operator


# -- a signed-in user's runs: followed after a reload, run again from the history --


@pytest.mark.parametrize("mode", ["background", "queued"])
def test_a_reloaded_page_still_follows_the_run_in_flight(
    app, live, dash_duo, browser_login, mode
):
    name, _ = browser_login
    open_main(dash_duo, live)
    fill_and_run(dash_duo, "50", "30", mode)
    wait_for(lambda: 0 < progress(dash_duo)[0] < 50, 40, 0.1)
    (run,) = dash_runs(app, f"dash-{mode}")

    dash_duo.driver.refresh()
    dash_duo.wait_for_element_by_id(ids.RUN_BUTTON)
    # The page picks the run up again from its row: the status names it, the bar
    # keeps moving, and only cancel is enabled.
    following = wait_for(
        lambda: f"{mode} run {run.id[:8]}" in status(dash_duo) and status(dash_duo)
    )
    assert following.startswith(("PROGRESS", "STARTED"))
    seen = progress(dash_duo)[0]
    wait_for(lambda: progress(dash_duo)[0] > seen, 20, 0.1)
    assert dash_duo.find_element(f"#{ids.RUN_BUTTON}").get_attribute("disabled")
    dash_duo.find_element(f"#{ids.CANCEL_BUTTON}").click()
    assert f"{mode} run {run.id[:8]} was cancelled" in wait_status(dash_duo, "REVOKED")
    (run,) = dash_runs(app, f"dash-{mode}")
    assert run.state == "REVOKED" and run.cancelled_by == name
    wait_for(
        lambda: (
            not dash_duo.find_element(f"#{ids.RUN_BUTTON}").get_attribute("disabled")
        )
    )


def history_row(dash_duo: Browser, run_id: str):
    """The history grid's row of a run (the grid keys rows by run id), or None."""
    rows = dash_duo.driver.find_elements(
        By.CSS_SELECTOR,
        f"#{ids.HISTORY_GRID} .ag-center-cols-container .ag-row[row-id='{run_id}']",
    )
    return rows[0] if rows else None


def test_history_shows_who_started_each_run_and_runs_one_again(
    app, live, dash_duo, browser_login, make_user, client
):
    name, _ = browser_login
    operator, token = make_user("operator")
    mine = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 3, "seconds": 0}
    ).get_json()  # the tests' admin
    theirs = app.test_client(token=token).post(
        "/api/tasks/summarize_data/runs", json={"category": "beta"}
    )
    theirs = theirs.get_json()

    dash_duo.driver.get(live + "/dash/history")
    wait_for(lambda: history_row(dash_duo, theirs["id"]))
    assert operator in history_row(dash_duo, theirs["id"]).text
    dash_duo.select_dcc_dropdown(f"#{ids.HISTORY_CREATED_BY}", value=operator)
    wait_for(lambda: history_row(dash_duo, mine["id"]) is None)
    assert history_row(dash_duo, theirs["id"]) is not None

    rerun = dash_duo.find_element(f"#{ids.HISTORY_RERUN}")
    assert rerun.get_attribute("disabled")
    history_row(dash_duo, theirs["id"]).click()
    wait_for(lambda: not rerun.get_attribute("disabled"))
    rerun.click()
    dash_duo.wait_for_contains_text(f"#{ids.HISTORY_STATUS}", "Started summarize_data")
    (again,) = dash_runs(app, "dash-queued")
    assert again.params == {"category": "beta"} and again.created_by == name
    # The new run shows up in the grid (the filter is on the operator: clear it).
    dash_duo.select_dcc_dropdown(f"#{ids.HISTORY_CREATED_BY}", value=name)
    wait_for(lambda: history_row(dash_duo, again.id))

    # A viewer is told no.
    viewer, _ = make_user("viewer", password=BROWSER_PASSWORD)
    sign_in(dash_duo.driver, live, viewer, BROWSER_PASSWORD)
    dash_duo.driver.get(live + "/dash/history")
    wait_for(lambda: history_row(dash_duo, theirs["id"]))
    history_row(dash_duo, theirs["id"]).click()
    rerun = dash_duo.find_element(f"#{ids.HISTORY_RERUN}")
    wait_for(lambda: not rerun.get_attribute("disabled"))
    rerun.click()
    dash_duo.wait_for_contains_text(f"#{ids.HISTORY_STATUS}", "needs the operator role")
    assert len(dash_runs(app, "dash-queued")) == 1
