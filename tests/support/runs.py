"""Runs and schedules in a test's app: waiting for a run's state, rows written
directly, beat's housekeeping by hand, and a stream of starts against a server."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask.testing import FlaskClient

from tests.support.basics import wait_for

if TYPE_CHECKING:
    from flask import Flask

    from myapp.models import Run
    from myapp.runs.reaper import ReapReport


def wait_for_state(
    client: FlaskClient, run_id: str, states: tuple[str, ...], timeout: float = 20
) -> dict[str, Any]:
    """Poll the status URL until the run is in one of `states`; return the run."""

    def check() -> dict[str, Any] | None:
        response = client.get(f"/api/runs/{run_id}")
        if response.status_code == 404:  # a run sent by another client: not adopted yet
            return None
        body = response.get_json()
        return body if body["state"] in states else None

    return wait_for(check, timeout, what=f"run {run_id} in {states}")


def pending_run(task: str, params: dict[str, Any], *, source: str) -> Run:
    """A PENDING run row with no message sent: what admission records before it
    sends, for tests of pages and callbacks that only read runs. Needs an app
    context."""
    from myapp.extensions import db
    from myapp.models import Run, utcnow
    from myapp.tasks import get_definition

    run = Run(
        id=str(uuid.uuid4()),
        task=task,
        params=get_definition(task).validate(params),
        source=source,
        state="PENDING",
        attempts=0,
        created_at=utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    return run


def add_schedule(
    app: Flask,
    every_s: float,
    *,
    name: str = "generate-data",
    task: str = "generate_data",
    params: dict[str, Any] | None = None,
) -> int:
    """A schedule row written directly (as the first migration writes
    generate-data), with an interval shorter than users may save, for tests that
    need beat to send often. Returns its id."""
    from myapp.extensions import db
    from myapp.models import Schedule

    with app.app_context():
        schedule = Schedule(name=name, task=task, params=params or {}, every_s=every_s)
        db.session.add(schedule)
        db.session.commit()
        return schedule.id


def sweep(app: Flask) -> ReapReport:
    """What beat triggers every 15 s: the outbox and the reaper, one pass each."""
    from myapp import runs
    from myapp.runs import reaper

    with app.app_context():
        runs.dispatch_pending()
        return reaper.reap_runs()


def settle(
    app: Flask, ids: Iterable[str], timeout: float
) -> tuple[dict[str, Run], set[str]]:
    """Sweep until every run is finished; return the runs by id and the ids the
    reaper sent again or failed."""
    from myapp.extensions import db
    from myapp.models import FINISHED_STATES, Run

    ids = list(ids)
    reports: list[ReapReport] = []

    def finished() -> dict[str, Run] | None:
        reports.append(sweep(app))
        with app.app_context():
            rows = db.session.query(Run).filter(Run.id.in_(ids)).all()
            db.session.expunge_all()
        if len(rows) == len(ids) and all(r.state in FINISHED_STATES for r in rows):
            return {r.id: r for r in rows}
        return None

    done = wait_for(finished, timeout, interval=0.5, what="every run finished")
    reaped = {i for r in reports for i in (*r.resent, *r.failed)}
    return done, reaped


class StartStream:
    """Starts of `task` posted to a running web server every `interval` seconds from
    a thread, as an API client would, until `stop()`; every answer is kept as
    (monotonic time sent, HTTP status or the client error's name, run id if 202)."""

    def __init__(
        self,
        url: str,
        token: str,
        params: dict[str, Any],
        interval: float = 0.2,
        task: str = "generate_data",
    ) -> None:
        import requests

        self.answers: list[tuple[float, int | str, str | None]] = []
        self._url = f"{url}/api/tasks/{task}/runs"
        self._params = params
        self._interval = interval
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._post, daemon=True)
        self._thread.start()

    def _post(self) -> None:
        import requests

        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                # Longer than any answer should take: a hung request shows up as a
                # Timeout answer, not as a test that hangs.
                response = self._session.post(self._url, json=self._params, timeout=15)
            except requests.RequestException as exc:
                self.answers.append((sent, type(exc).__name__, None))
            else:
                status = response.status_code
                run_id = response.json()["id"] if status == 202 else None
                self.answers.append((sent, status, run_id))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def accepted(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        """Ids of the runs answered 202, of the starts sent between the two times."""
        return [i for t, _, i in self.answers if i is not None and since <= t < until]

    def statuses(self) -> dict[int | str, int]:
        """How many answers of each status."""
        return dict(Counter(status for _, status, _ in self.answers))
