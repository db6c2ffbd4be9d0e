"""Fencing: once a run has been taken over (its lease lapsed and another delivery
claimed it), nothing the older attempt still does changes the run: not its
progress, heartbeat or log, not its outcome, not the data set. Real Redis, real
database (PostgreSQL with TEST_DATABASE_URL), the worker's own code in threads."""

from __future__ import annotations

import importlib
import pickle
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from myapp.extensions import db, get_store
from myapp.models import Run, utcnow
from myapp.runs import ProgressReporter, execute_run, execution, reaper
from myapp.runs.errors import RunFailed, RunSuperseded
from myapp.runs.execution import _claim
from myapp.runs.logs import read_lines, run_log
from myapp.runs.transitions import Claim, fail_run, finish_run
from myapp.store import AttemptSuperseded, DataStore
from myapp.tasks import get_definition
from tests.support import pending_run, wait_for

TASKS = "tests.host_tasks"


@pytest.fixture
def app(make_app):
    # A long lease: the heartbeat thread (every lease/3) stays quiet while a test
    # stands in for a partition by backdating the heartbeat.
    return make_app(TASK_MODULES=TASKS, RUN_LEASE_SECONDS=30)


def lapse_lease(run_id: str) -> None:
    """What a partition longer than the lease leaves: a heartbeat long past."""
    db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(heartbeat_at=utcnow() - timedelta(minutes=5))
    )
    db.session.commit()


def fresh(run_id: str) -> Run:
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    db.session.commit()
    return run


def run_in_thread(app, run_id: str, params: dict, worker: str) -> dict:
    """execute_run in a thread of its own (its own session), as a pool process
    would; the outcome lands in the returned dict."""
    outcome: dict = {}

    def target() -> None:
        with app.app_context():
            try:
                outcome["result"] = execute_run(
                    get_definition("paced"), run_id, params, worker=worker
                )
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                db.session.remove()

    outcome["thread"] = threading.Thread(target=target, daemon=True)
    outcome["thread"].start()
    return outcome


def test_a_taken_over_attempt_stops_and_changes_nothing(app, caplog):
    # The module the app imported by name (TASK_MODULES), so its GATES.
    host_tasks = importlib.import_module(TASKS)
    gate = host_tasks.GATES["old"] = threading.Event()
    with app.app_context():
        params = {"rows": 7, "steps": 3, "pause": 0.05, "gate": "old"}
        run_id = pending_run("paced", params, source="api").id
        old = run_in_thread(app, run_id, params, "host-a")
        # Attempt 1 is between its first and second step, its first line logged.
        wait_for(
            lambda: (
                (
                    fresh(run_id).progress_current == 1
                    and read_lines(fresh(run_id))["lines"]
                )
                or None
            ),
            10,
            0.05,
            "attempt 1 reported its first step",
        )
        lapse_lease(run_id)
        new = run_in_thread(app, run_id, {**params, "gate": ""}, "host-b")
        new["thread"].join(30)
        done = fresh(run_id)
        assert (done.state, done.attempts, done.worker) == ("SUCCESS", 2, "host-b")
        assert done.result["attempt"] == 2 and done.result["rows"] == 7
        finished_at, lines = done.finished_at, read_lines(done)["lines"]

        gate.set()  # the old attempt goes on: its next write is refused
        old["thread"].join(30)
        assert isinstance(old.get("error"), RunSuperseded), old
        # A pool process hands it to the worker's main process, pickled.
        assert pickle.loads(pickle.dumps(old["error"])).attempt == 1
        after = fresh(run_id)
        assert after.to_dict() == done.to_dict()
        assert after.finished_at == finished_at
        assert read_lines(after)["lines"] == lines
        assert [line["message"] for line in lines] == [
            "attempt 1 step 1",
            "attempt 2 step 1",
            "attempt 2 step 2",
            "attempt 2 step 3",
        ]
        assert get_store().total() == 7
        assert get_store().run_span(run_id)[1] == 7
    refusals = [r for r in caplog.records if "was taken over" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]


def test_every_write_of_the_older_attempt_is_refused_and_the_newer_ones_pass(app):
    with app.app_context():
        run_id = pending_run("paced", {}, source="api").id
        store = get_store()
        claims = []
        for _ in range(2):
            claims.append(_claim(run_id, "host"))
            lapse_lease(run_id)
        old, new = claims
        assert (old.attempt, new.attempt) == (1, 2)

        # Progress from the task's thread: refused, and the task is stopped.
        reporter = ProgressReporter(run_id, interval=0, beat=30, claim=old)
        with pytest.raises(RunSuperseded), reporter:
            reporter(3, 10, "old news")
        assert fresh(run_id).progress_message != "old news"

        # The heartbeat thread alone: refused, noticed, no heartbeat written.
        before = fresh(run_id).heartbeat_at
        quiet = Claim(run_id, 1)
        with ProgressReporter(run_id, interval=0.05, beat=0.1, claim=quiet):
            wait_for(lambda: quiet.superseded or None, 10, 0.05, "heartbeat refused")
        assert fresh(run_id).heartbeat_at == before

        # Log lines (and the dropped count) of the old attempt: none kept.
        with run_log(run_id, Claim(run_id, 1)) as logger:
            logger.info("from the old attempt")
        with run_log(run_id, new) as logger:
            logger.info("from the new attempt")
        assert [ln["message"] for ln in read_lines(fresh(run_id))["lines"]] == [
            "from the new attempt"
        ]

        # The data commit: refused inside Redis, whatever the order.
        with pytest.raises(AttemptSuperseded):
            store.commit_run(run_id, store.random_rows(5), attempt=1)
        assert store.commit_run(run_id, store.random_rows(4), attempt=2).count == 4
        with pytest.raises(AttemptSuperseded):
            store.commit_run(run_id, store.random_rows(5), attempt=1)
        assert store.total() == 4

        # The outcome: the old attempt can neither fail nor finish the run.
        assert not fail_run(run_id, "ConnectionError", "late", Claim(run_id, 1))
        assert not finish_run(run_id, {"attempt": 1}, None, Claim(run_id, 1))
        assert fresh(run_id).state == "STARTED"
        assert finish_run(run_id, {"attempt": 2}, None, new)
        done = fresh(run_id)
        assert (done.state, done.result, done.to_dict()["attempts"]) == (
            "SUCCESS",
            {"attempt": 2},
            2,
        )


def test_a_commit_caught_mid_staging_by_a_takeover_appends_once(app):
    """Both attempts reach the commit; the older one was staging when the newer one
    claimed and committed: only the newer one's rows are in."""
    with app.app_context():
        run_id = pending_run("paced", {}, source="api").id
        store = get_store()
        big = store.random_rows(20_000)  # several staging chunks
        taken_over = []

        def takeover(staged: int, total: int) -> None:
            if not taken_over:
                store.fence_run(run_id, 2)  # the newer attempt's claim
                taken_over.append(store.commit_run(run_id, big[:3], attempt=2))

        with pytest.raises(AttemptSuperseded):
            store.commit_run(run_id, big, on_staged=takeover, attempt=1)
        assert taken_over[0].appended and taken_over[0].count == 3
        assert store.total() == 3
        assert store.run_span(run_id) == (taken_over[0].first_id, 3)


# -- the reaper's window ---------------------------------------------------------------
#
# The reaper does not fence an attempt: it marks a run whose lease lapsed RETRY and
# sends it again, and only the next claim sets `attempts` to a new number. Between
# the two, the older attempt (paused, or on a slow link, not dead) may still finish
# or commit its rows. These drive exactly that order.


class Hold:
    """Holds the thread that calls it until the test lets it go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        assert self.go.wait(30), "never let go"

    def wait(self) -> None:
        assert self.reached.wait(30), "never reached"


def sent_again(run_id: str) -> None:
    """The reaper's decision: the lease lapsed, a pass marks the run RETRY and
    sends it again."""
    lapse_lease(run_id)
    report = reaper.reap_runs()
    assert report.resent == [run_id], report
    assert fresh(run_id).state == "RETRY"


def seen(run_id: str) -> tuple[dict, list, tuple]:
    """The run's JSON, its log lines and its span of rows."""
    run = fresh(run_id)
    return run.to_dict(), read_lines(run)["lines"], get_store().run_span(run_id)


def test_an_attempt_finishing_after_the_reaper_sent_its_run_again_ends_it_once(
    app, monkeypatch
):
    params = {"rows": 5, "steps": 2, "pause": 0}
    before_finish = Hold()

    def held_finish(*args, **kwargs):
        before_finish()
        return finish_run(*args, **kwargs)

    monkeypatch.setattr(execution, "finish_run", held_finish)
    with app.app_context():
        run_id = pending_run("paced", params, source="api").id
        old = run_in_thread(app, run_id, params, "host-a")
        before_finish.wait()  # its rows are in, its log written
        sent_again(run_id)
        before_finish.go.set()
        old["thread"].join(30)
        # Still the run's current attempt (no claim since): its finish is the run's.
        assert old["result"]["attempt"] == 1, old
        done = seen(run_id)
        assert (done[0]["state"], done[0]["attempts"]) == ("SUCCESS", 1)
        assert done[0]["result"] == old["result"] and done[2][1] == 5

        # The message the reaper sent arrives: the run has ended, nothing runs.
        monkeypatch.setattr(execution, "finish_run", finish_run)
        new = run_in_thread(app, run_id, params, "host-b")
        new["thread"].join(30)
        assert new.get("result") == old["result"], new
        assert seen(run_id) == done
        assert get_store().total() == 5
        assert not reaper.reap_runs()  # and nothing is left for the reaper


@pytest.mark.parametrize("first", ["the new claim", "the old attempt's next write"])
def test_an_attempt_committing_after_the_reaper_sent_its_run_again_appends_once(
    app, monkeypatch, first
):
    params = {"rows": 5, "steps": 2, "pause": 0}
    before_commit, after_commit = Hold(), Hold()
    commit_run = DataStore.commit_run

    def held_commit(self, run_id, rows, *args, attempt=None, **kwargs):
        if attempt == 1:
            before_commit()
        committed = commit_run(self, run_id, rows, *args, attempt=attempt, **kwargs)
        if attempt == 1:
            after_commit()
        return committed

    monkeypatch.setattr(DataStore, "commit_run", held_commit)
    with app.app_context():
        run_id = pending_run("paced", params, source="api").id
        old = run_in_thread(app, run_id, params, "host-a")
        before_commit.wait()
        # Its last report and its lines written (by threads, a moment later), so
        # no heartbeat lands between the lapse and the reaper's pass.
        wait_for(
            lambda: (
                (
                    fresh(run_id).progress_current == 2
                    and len(read_lines(fresh(run_id))["lines"]) == 2
                )
                or None
            ),
            10,
            0.05,
            "attempt 1's last report and lines written",
        )
        sent_again(run_id)
        before_commit.go.set()
        after_commit.wait()  # attempt 1's rows are in; it has not finished
        assert get_store().run_span(run_id)[1] == 5
        if first == "the new claim":
            new = run_in_thread(app, run_id, params, "host-b")
            new["thread"].join(30)
            done = seen(run_id)
            after_commit.go.set()
            old["thread"].join(30)
            # Its next write finds a later attempt: it stops, writing nothing.
            assert isinstance(old.get("error"), RunSuperseded), old
        else:
            waiting = seen(run_id)
            # Past the reporter's 0.2 s interval: its next report is written at
            # once, not held back (and then refused from its thread).
            time.sleep(0.3)
            after_commit.go.set()
            old["thread"].join(30)
            # Its next write finds the run RETRY: it stops, writing nothing,
            # and says why (no later attempt exists yet, and it was no cancel).
            assert isinstance(old.get("error"), RunFailed), old
            assert "sent again" in str(old["error"]), old
            assert seen(run_id) == waiting
            new = run_in_thread(app, run_id, params, "host-b")
            new["thread"].join(30)
            done = seen(run_id)
        # The new attempt ran and finished the run; the rows are attempt 1's, once.
        assert new.get("result", {}).get("attempt") == 2, new
        assert (done[0]["state"], done[0]["attempts"]) == ("SUCCESS", 2)
        assert done[0]["result"]["rows"] == 5 and done[2][1] == 5
        assert done[0]["result"]["first_id"] == done[2][0]
        assert seen(run_id) == done
        assert get_store().total() == 5
        messages = [line["message"] for line in done[1]]
        assert messages[:2] == ["attempt 1 step 1", "attempt 1 step 2"]
        assert messages[2:] == ["attempt 2 step 1", "attempt 2 step 2"]
        assert not reaper.reap_runs()
