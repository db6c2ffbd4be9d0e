"""The HTML pages: forms built from the task definitions, CSRF, 202 + Location,
the run history and the live run page (headless Chromium where JavaScript matters)."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from html import unescape

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from myapp import runs
from myapp.extensions import db
from myapp.models import Run
from myapp.store import CATEGORIES
from myapp.web.errors import CSRF_MESSAGE
from tests.support import free_port, pending_run, sign_in, wait_for, wait_for_state


def form_of(html: str, task: str) -> str:
    match = re.search(
        rf'<form class="task" id="form-{task}".*?</form>', html, flags=re.DOTALL
    )
    assert match, f"no form for {task}"
    return match.group(0)


def hidden_fields(client, task: str = "generate_data") -> dict[str, str]:
    """The hidden fields of a task's form as the home page renders them."""
    html = client.get("/").get_data(as_text=True)
    form = form_of(html, task)
    return {
        name: unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="(\w+)" value="([^"]*)">', form
        )
    }


def submit(client, task: str = "generate_data", **params: str):
    return client.post(f"/tasks/{task}/runs", data={**hidden_fields(client), **params})


def run_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Run))


def get_run(app, run_id: str) -> Run:
    with app.app_context():
        run = db.session.get(Run, run_id)
        assert run is not None
        db.session.expunge(run)
        return run


def text_of(response) -> str:
    """The page's text with tags and repeated spaces removed, for readable asserts."""
    text = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", unescape(text))


# -- the home page and its forms ---------------------------------------------


def test_home_page_has_a_form_per_task_from_its_definition(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/dash/"' in html and 'href="/runs"' in html

    generate = form_of(html, "generate_data")
    assert 'action="/tasks/generate_data/runs"' in generate
    rows = re.search(r'<input id="generate_data-rows"[^>]*>', generate, re.DOTALL)[0]
    # Text with a numeric keyboard: the server sees what was typed (a number
    # field would be emptied by the browser and the default run without a word).
    assert 'type="text"' in rows and 'inputmode="numeric"' in rows
    assert 'value="10"' in rows
    seconds = re.search(r'<input id="generate_data-seconds"[^>]*>', generate, re.S)[0]
    assert 'inputmode="decimal"' in seconds and 'value="5"' in seconds
    assert "Whole number from 1 to 100000. Default: 10." in text_of(response)

    summarize = form_of(html, "summarize_data")
    assert '<select id="summarize_data-category" name="category"' in summarize
    assert '<option value="" selected>(any)</option>' in summarize
    assert all(f'value="{c}"' in summarize for c in CATEGORIES)
    assert 'name="older_than_days"' in form_of(html, "prune_runs")


def test_bounds_follow_the_configuration(make_app):
    app = make_app(MAX_ROWS_PER_RUN=50)
    html = app.test_client().get("/").get_data(as_text=True)
    assert "Whole number from 1 to 50." in form_of(html, "generate_data")


def test_home_page_lists_recent_runs(client):
    run = client.post("/api/tasks/summarize_data/runs", json={}).get_json()
    html = client.get("/").get_data(as_text=True)
    assert f'href="/runs/{run["id"]}"' in html


def test_each_render_carries_a_fresh_one_time_key(client):
    first, second = hidden_fields(client), hidden_fields(client)
    assert first["idempotency_key"] != second["idempotency_key"]
    assert first["csrf_token"]


# -- starting a run from a form ----------------------------------------------


def test_form_post_answers_202_with_location_and_the_run_page(app, client):
    response = submit(client, rows="7", seconds="0.5")
    assert response.status_code == 202
    run_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert response.headers["Location"] == f"/runs/{run_id}"
    html = response.get_data(as_text=True)
    assert f'data-status-url="/api/runs/{run_id}"' in html
    assert 'id="run-progress"' in html and 'id="cancel-form"' in html

    run = get_run(app, run_id)
    assert run.source == "web" and run.task == "generate_data"
    assert run.params == {"rows": 7, "seconds": 0.5}


def test_resubmitting_the_same_form_returns_the_first_run(app, client):
    fields = {**hidden_fields(client), "rows": "3", "seconds": "0"}
    first = client.post("/tasks/generate_data/runs", data=fields)
    again = client.post("/tasks/generate_data/runs", data=fields)
    assert first.status_code == again.status_code == 202
    assert first.headers["Location"] == again.headers["Location"]
    assert "had already been sent" in text_of(again)
    assert run_count(app) == 1


def test_empty_fields_mean_defaults(app, client):
    response = submit(client, "summarize_data", category="")
    assert response.status_code == 202
    run = get_run(app, response.headers["Location"].rsplit("/", 1)[-1])
    assert run.params == {"category": None}
    response = submit(client, rows="", seconds="")
    run = get_run(app, response.headers["Location"].rsplit("/", 1)[-1])
    assert run.params == {"rows": 10, "seconds": 5.0}


def test_invalid_input_rerenders_the_form_with_field_messages(app, client):
    response = submit(client, rows="0", seconds="abc")
    assert response.status_code == 422
    page = text_of(response)
    assert "rows must be at least 1" in page
    assert "seconds must be a number" in page
    form = form_of(response.get_data(as_text=True), "generate_data")
    assert 'value="abc"' in form and 'aria-invalid="true"' in form
    assert run_count(app) == 0

    response = submit(client, rows="100001")
    assert response.status_code == 422
    assert "rows must be at most 100000" in text_of(response)
    assert run_count(app) == 0


def test_unknown_form_field_is_named(app, client):
    response = submit(client, "prune_runs", older_than_days="2", colour="red")
    assert response.status_code == 422
    assert "colour is not a parameter of prune_runs" in text_of(response)
    assert run_count(app) == 0


def test_unknown_task_is_a_404_page(client):
    response = client.post("/tasks/nope/runs", data=hidden_fields(client))
    assert response.status_code == 404
    assert "no task is named 'nope'" in text_of(response)
    assert 'href="/dash/"' in response.get_data(as_text=True)  # the site's layout


# -- CSRF ---------------------------------------------------------------------


def test_form_post_without_a_valid_csrf_token_is_refused(app, client):
    fields = hidden_fields(client)
    response = client.post(
        "/tasks/generate_data/runs",
        data={"idempotency_key": fields["idempotency_key"], "rows": "3"},
    )
    assert response.status_code == 400
    assert CSRF_MESSAGE in text_of(response)

    forged = {**fields, "csrf_token": "forged"}
    response = client.post("/tasks/generate_data/runs", data=forged)
    assert response.status_code == 400
    assert CSRF_MESSAGE in text_of(response)

    run = client.post("/api/tasks/summarize_data/runs", json={}).get_json()
    assert client.post(f"/runs/{run['id']}/cancel").status_code == 400
    assert run_count(app) == 1  # only the API run, which needs no token


def test_csrf_token_from_another_session_is_refused(app, client):
    token_elsewhere = hidden_fields(app.test_client())
    response = client.post("/tasks/generate_data/runs", data=token_elsewhere)
    assert response.status_code == 400
    assert run_count(app) == 0


def test_json_api_and_dash_routes_are_exempt(client):
    assert client.post("/api/tasks/summarize_data/runs", json={}).status_code == 202
    # Dash posts JSON without a form token; whatever Dash answers, it is not CSRF.
    response = client.post("/dash/_dash-update-component", json={})
    assert response.status_code != 400 or CSRF_MESSAGE not in text_of(response)


# -- the run history ------------------------------------------------------------


def make_runs(app, spec: list[tuple[str, str]]) -> list[str]:
    """Record runs (task, source) without sending them; oldest first."""
    ids = []
    with app.app_context():
        for task, source in spec:
            run = pending_run(task, {}, source=source)
            ids.append(run.id)
    return ids


def test_history_is_newest_first_with_paging(app, client):
    ids = make_runs(app, [("summarize_data", "api")] * 30)
    first = client.get("/runs").get_data(as_text=True)
    shown = re.findall(r'href="/runs/([0-9a-f-]{36})"', first)
    assert shown == ids[::-1][:25]
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older, "no link to the next page"
    second = client.get(unescape(older.group(1))).get_data(as_text=True)
    assert re.findall(r'href="/runs/([0-9a-f-]{36})"', second) == ids[::-1][25:]
    assert 'rel="next"' not in second and "Newest" in second


def test_history_filters_by_task_state_and_source(app, client):
    summarize, prune, cli_run = make_runs(
        app, [("summarize_data", "api"), ("prune_runs", "beat"), ("prune_runs", "cli")]
    )
    with app.app_context():
        runs.fail_run(cli_run, "Boom", "broken")

    def shown(query: str) -> set[str]:
        html = client.get("/runs" + query).get_data(as_text=True)
        return set(re.findall(r'href="/runs/([0-9a-f-]{36})"', html))

    assert shown("") == {summarize, prune, cli_run}
    assert shown("?task=prune_runs") == {prune, cli_run}
    assert shown("?source=beat") == {prune}
    assert shown("?state=FAILURE") == {cli_run}
    assert shown("?task=prune_runs&state=PENDING") == {prune}
    html = client.get("/runs?source=beat").get_data(as_text=True)
    assert '<option value="beat" selected>' in html


def test_history_rejects_a_bad_filter_with_its_name(client):
    response = client.get("/runs?state=DONE")
    assert response.status_code == 400
    assert "state must be one of PENDING" in text_of(response)


# -- one run ------------------------------------------------------------------------


def test_run_page_shows_parameters_state_and_timings(app, client):
    (run_id,) = make_runs(app, [("prune_runs", "cli")])
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    text = text_of(page)
    assert "older_than_days=30" in text and "State: queued" in text
    assert "Waiting for a worker" in text and "Cancel this run" in text
    # Readable without JavaScript: it reloads itself while the run is active.
    assert '<meta http-equiv="refresh"' in page.get_data(as_text=True)

    with app.app_context():
        runs.fail_run(run_id, "ValueError", "it broke")
    page = client.get(f"/runs/{run_id}")
    text = text_of(page)
    assert "State: failed" in text and "ValueError : it broke" in text
    html = page.get_data(as_text=True)
    assert "cancel-form" not in html and "http-equiv" not in html


def test_a_cancelled_run_says_nothing_was_added_in_words_people_use(app, client):
    (run_id,) = make_runs(app, [("generate_data", "web")])
    with app.app_context():
        run = db.session.get(Run, run_id)
        run.state, run.progress_current, run.progress_total = "PROGRESS", 7000, 50000
        run.progress_message = "7000 of 50000 rows"
        db.session.commit()
    assert "State: running" in text_of(client.get(f"/runs/{run_id}"))
    with app.app_context():
        runs.revoke_run(db.session.get(Run, run_id), cancelled_by="admin")
    page = client.get(f"/runs/{run_id}")
    text = text_of(page)
    assert "State: cancelled" in text and "Cancelled: nothing was added." in text
    assert "7000" not in text and "14%" not in text
    assert re.search(r'<progress id="run-progress"[^>]*\bhidden\b', page.text)
    # No empty log box: one sentence says there is nothing.
    assert re.search(r'<ol id="run-log-lines"[^>]*></ol>', page.text)
    assert "The task wrote nothing to its log." in text
    # The API keeps the contract's states.
    assert client.get(f"/api/runs/{run_id}").get_json()["state"] == "REVOKED"


def test_a_run_sent_without_parameters_shows_the_defaults_it_used(app, client):
    (run_id,) = make_runs(app, [("generate_data", "beat")])
    with app.app_context():
        db.session.get(Run, run_id).params = {}  # as beat sends it
        db.session.commit()
    text = text_of(client.get(f"/runs/{run_id}"))
    assert "Parameters defaults: rows=10 , seconds=5" in text


def test_run_again_says_which_run_it_repeats_and_shows_its_own_address(app, client):
    (run_id,) = make_runs(app, [("summarize_data", "web")])
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    key = unescape(re.search(r'name="idempotency_key" value="([^"]+)"', page)[1])
    answer = client.post(
        f"/runs/{run_id}/rerun",
        data={
            "csrf_token": hidden_fields(client)["csrf_token"],
            "idempotency_key": key,
        },
    )
    assert answer.status_code == 202
    new_id = answer.headers["Location"].rsplit("/", 1)[-1]
    assert new_id != run_id
    assert f"A new run: Run again of run {run_id[:8]}" in text_of(answer)
    html = answer.get_data(as_text=True)
    assert f'href="/runs/{run_id}"' in html
    assert f'data-page-url="/runs/{new_id}"' in html and "page.js" in html


def test_history_links_to_dash_history_and_shows_errors_in_words(app, client):
    (run_id,) = make_runs(app, [("prune_runs", "cli")])
    with app.app_context():
        runs.fail_run(run_id, "ValueError", "the folder is gone " * 10)
    html = client.get("/runs").get_data(as_text=True)
    assert 'href="/dash/history"' in html and f'href="/runs/{run_id}"' in html
    cell = re.search(
        r'data-label="State"><span class="state[^>]*>failed</span>.*?</td>', html, re.S
    )
    assert cell and "ValueError: the folder is gone" in cell[0]
    empty = text_of(client.get("/runs?task=summarize_data"))
    assert "No runs match these filters." in empty


def test_api_docs_page_is_drawn_from_the_openapi_document(app, client):
    document = client.get("/api/openapi.json").get_json()
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    text = text_of(page)
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                assert f"{method.upper()} {path}" in text, (method, path)
    # A task's body fields with their rules and defaults, as a person reads them.
    assert re.search(r"<code>rows</code>.*?integer.*?≥ 1, ≤ 100000.*?10", html, re.S)
    assert "Idempotency-Key" in text and 'href="#schema-Run"' in html
    assert "<code>flask --app wsgi users token NAME</code>" in html
    assert 'href="#schema-list of object"' not in html  # only shapes it describes
    # Nothing fetched from elsewhere, and a link to make a token.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert 'href="/tokens"' in html
    anonymous = app.test_client(token=None).get("/api/docs")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/login?next=/api/docs")


def test_unknown_run_is_a_404_page(client):
    response = client.get("/runs/does-not-exist")
    assert response.status_code == 404
    assert "No run has id 'does-not-exist'" in text_of(response)
    assert client.get("/api/runs/does-not-exist").get_json()["error"]["code"]


def test_cancel_button_revokes_the_run(app, client):
    (run_id,) = make_runs(app, [("generate_data", "web")])
    token = hidden_fields(client)["csrf_token"]
    response = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/runs/{run_id}"
    assert get_run(app, run_id).state == "REVOKED"

    again = client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert again.status_code == 409
    assert "already ended" in text_of(again)


def test_form_run_reaches_success_with_a_worker(client, worker):
    response = submit(client, rows="4", seconds="0")
    run_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert wait_for_state(client, run_id, ("SUCCESS", "FAILURE"))["state"] == "SUCCESS"
    text = text_of(client.get(f"/runs/{run_id}"))
    assert "State: finished" in text and '"rows": 4' in text and "100%" in text


# -- the live page in a real browser --------------------------------------------------


class LiveServer:
    """The app served over real HTTP in a thread; can go away and come back."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromedriver are needed: run `make test`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver")), options=options
    )
    yield driver
    driver.quit()


def read(browser, element_id: str, attribute: str | None = None) -> str | None:
    element = browser.find_element("id", element_id)
    if attribute is None:
        return element.text
    return element.get_attribute(attribute)


def test_letters_in_a_number_field_start_nothing_and_say_why(
    app, browser, live_server, browser_login
):
    sign_in(browser, live_server.url, *browser_login)
    browser.get(live_server.url + "/")
    rows = browser.find_element("id", "generate_data-rows")
    rows.clear()
    rows.send_keys("abc")
    browser.find_element("css selector", "#form-generate_data button").click()
    # The form comes back with what was typed and the field's message: no run
    # with the default 10 rows.
    wait_for(lambda: "rows must be an integer" in browser.page_source)
    assert (
        browser.find_element("id", "generate_data-rows").get_attribute("value") == "abc"
    )
    with app.app_context():
        assert runs.list_runs(runs.RunFilter(), limit=5)[0] == []


def test_live_page_follows_a_form_run_to_success(
    browser, live_server, worker, browser_login
):
    sign_in(browser, live_server.url, *browser_login)
    browser.get(live_server.url + "/")
    browser.find_element("id", "generate_data-rows").clear()
    browser.find_element("id", "generate_data-rows").send_keys("20")
    browser.find_element("id", "generate_data-seconds").clear()
    browser.find_element("id", "generate_data-seconds").send_keys("3")
    browser.find_element("css selector", "#form-generate_data button").click()

    # The address bar shows the run's page, not the form's POST URL.
    wait_for(lambda: re.search(r"/runs/[0-9a-f-]{36}$", browser.current_url))
    # Progress moves mid-run without a reload...
    wait_for(lambda: 0 < float(read(browser, "run-progress", "value") or 0) < 20)
    assert read(browser, "cancel-form", "id") == "cancel-form"
    # ...then the page shows the outcome and drops the cancel button.
    wait_for(lambda: read(browser, "run-state") == "finished", timeout=30)
    assert read(browser, "run-progress", "value") == "1"
    assert read(browser, "run-percent") == "100%"
    assert '"rows": 20' in read(browser, "run-result-json")
    assert read(browser, "run-duration").endswith(" s")
    assert not browser.find_elements("id", "cancel-form")


def test_live_page_copes_with_pending_retry_and_failure(
    app, browser, live_server, browser_login
):
    sign_in(browser, live_server.url, *browser_login)
    (run_id,) = make_runs(app, [("generate_data", "web")])
    browser.get(f"{live_server.url}/runs/{run_id}")
    assert read(browser, "run-state") == "queued"
    assert read(browser, "run-message") == "Waiting for a worker…"
    # No progress yet: an indeterminate bar, not a bar stuck at 0.
    assert read(browser, "run-progress", "value") in (None, "0")
    assert (
        browser.execute_script(
            "return document.getElementById('run-progress').position"
        )
        == -1
    )

    with app.app_context():
        runs.mark_retry(run_id, "redis went away")
    wait_for(lambda: read(browser, "run-state") == "waiting to retry")
    assert read(browser, "run-message").startswith("Waiting to retry")

    with app.app_context():
        runs.fail_run(run_id, "ValueError", "bad things")
    wait_for(lambda: read(browser, "run-state") == "failed")
    assert read(browser, "run-error-type") == "ValueError"
    assert read(browser, "run-error-message") == "bad things"
    assert not browser.find_elements("id", "cancel-form")


def test_live_page_says_when_the_connection_is_lost_and_recovers(
    app, browser, live_server, browser_login
):
    sign_in(browser, live_server.url, *browser_login)
    (run_id,) = make_runs(app, [("generate_data", "web")])
    browser.get(f"{live_server.url}/runs/{run_id}")
    assert read(browser, "run-state") == "queued"

    live_server.stop()
    wait_for(lambda: "Connection lost, retrying" in read(browser, "run-connection"))
    with app.app_context():
        runs.revoke_run(db.session.get(Run, run_id), cancelled_by=None)
    live_server.start()
    wait_for(lambda: read(browser, "run-state") == "cancelled", timeout=30)
    assert not browser.find_element("id", "run-connection").is_displayed()
    assert read(browser, "run-message") == "Cancelled: nothing was added."


def test_history_errors_read_without_sideways_scroll_on_a_phone(
    app, browser, live_server, browser_login
):
    sign_in(browser, live_server.url, *browser_login)
    (run_id,) = make_runs(app, [("prune_runs", "cli")])
    with app.app_context():
        runs.fail_run(run_id, "ValueError", "the folder /var/lib/a/long/path is gone")
    size = browser.get_window_size()
    browser.set_window_size(420, 900)
    try:
        browser.get(live_server.url + "/runs")
        error = browser.find_element("css selector", ".run-error")
        assert error.is_displayed() and "the folder /var/lib/a/long/path" in error.text
        width = "return document.documentElement.scrollWidth <= window.innerWidth"
        assert browser.execute_script(width)
        assert error.rect["x"] + error.rect["width"] <= 420
    finally:
        browser.set_window_size(size["width"], size["height"])
