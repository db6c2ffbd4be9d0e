"""Schedules fired by a real beat process to a real worker process, through a real
Redis, into the real database: a change applies with no restart, each fire is one
run, two beats send with one voice, and a stretch with no beat is caught up once.

Beat wakes every second here (`--max-interval 1`; 5 s in production) and intervals
go down to 2 s (SCHEDULE_MIN_SECONDS), so each step takes seconds, not minutes.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from myapp.extensions import db
from myapp.models import Run, Schedule, utcnow
from myapp.runs import FIRE_HEADER, SCHEDULE_HEADER, SOURCE_HEADER
from tests.support import Beat, Worker, wait_for

INTERVAL = 2


@pytest.fixture
def app(make_app):
    return make_app(SCHEDULE_MIN_SECONDS=1)


@pytest.fixture
def worker_process(app, tmp_path) -> Iterator[Worker]:
    worker = Worker.for_app(app, f"sched-{uuid.uuid4().hex[:6]}", tmp_path)
    yield worker
    worker.stop()


@pytest.fixture
def start_beat(app, tmp_path) -> Iterator:
    started: list[Beat] = []

    def start(name: str = "beat") -> Beat:
        beat = Beat.for_app(app, f"{name}-{len(started)}", tmp_path, max_interval=1)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def fired(app, schedule_id: int) -> list[Run]:
    """The runs of a schedule's fires, by fire time."""
    with app.app_context():
        db.session.expire_all()
        return list(
            db.session.scalars(
                select(Run)
                .where(Run.schedule_id == schedule_id, Run.fire_at.is_not(None))
                .order_by(Run.fire_at)
            )
        )


def gaps(runs: list[Run]) -> list[float]:
    return [
        (b.fire_at - a.fire_at).total_seconds() for a, b in itertools.pairwise(runs)
    ]


def make_schedule(client, name: str, every_s: int = INTERVAL) -> dict:
    response = client.post(
        "/api/schedules",
        json={
            "name": name,
            "task": "generate_data",
            "params": {"rows": 1, "seconds": 0},
            "every_s": every_s,
        },
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.mark.timeout(240)
def test_beat_follows_create_pause_edit_outage_and_delete(
    app, client, worker_process, start_beat
):
    beat = start_beat()
    schedule = make_schedule(client, "every-two")
    sid = schedule["id"]

    # Create: runs appear, from beat, as the schedule's creator, one per fire.
    runs = wait_for(lambda: (r := fired(app, sid)) and len(r) >= 3 and r, 40)
    assert {(r.source, r.created_by, r.task) for r in runs} == {
        ("beat", "admin", "generate_data")
    }
    assert set(gaps(runs)) == {float(INTERVAL)}
    done = wait_for(lambda: [r for r in fired(app, sid) if r.state == "SUCCESS"], 30)
    body = client.get(done[0].status_url).get_json()
    assert body["schedule_id"] == sid and body["source"] == "beat"

    # Pause: no fire after the change has been seen (within a beat pass).
    paused_at = utcnow()
    client.patch(schedule["url"], json={"enabled": False})
    count = len(fired(app, sid))
    wait_for(lambda: utcnow() > paused_at + timedelta(seconds=3 * INTERVAL), 30)
    late = [r for r in fired(app, sid) if r.fire_at > paused_at + timedelta(seconds=2)]
    assert late == [] and len(fired(app, sid)) <= count + 1

    # Edit the interval and resume: no fire for the paused stretch, then every 4 s.
    before = len(fired(app, sid))
    resumed_at = utcnow().replace(microsecond=0)
    client.patch(schedule["url"], json={"enabled": True, "every_s": 4})
    runs = wait_for(lambda: (r := fired(app, sid)) and len(r) >= before + 3 and r, 40)
    assert runs[before].fire_at >= resumed_at
    assert gaps(runs[before:]) == [4.0, 4.0][: len(runs) - before - 1]

    # beat away for a stretch of several intervals: one catch-up run when it is
    # back, not one per missed interval.
    beat.stop()
    stopped_at, last = utcnow(), fired(app, sid)[-1].fire_at
    wait_for(lambda: utcnow() > stopped_at + timedelta(seconds=14), 30)
    back_at = utcnow()
    beat = start_beat()
    runs = wait_for(
        lambda: (
            (r := [x for x in fired(app, sid) if x.fire_at > last])
            and len(r) >= 2
            and r
        ),
        60,
    )
    catch_up, following = runs[0], runs[1]
    assert catch_up.fire_at > back_at - timedelta(seconds=4), "an old missed fire"
    assert (following.fire_at - catch_up.fire_at).total_seconds() == 4.0

    # Delete: nothing more.
    assert client.delete(schedule["url"]).status_code == 204
    deleted_at = utcnow()
    wait_for(lambda: utcnow() > deleted_at + timedelta(seconds=8), 30)
    assert [
        r for r in fired(app, sid) if r.created_at > deleted_at + timedelta(seconds=2)
    ] == []
    assert beat.alive()


@pytest.mark.timeout(240)
def test_bad_rows_never_stop_beat(app, client, worker_process, start_beat):
    with app.app_context():
        db.session.add_all(
            [
                # Written around the checks: a cron and a zone no parser takes.
                Schedule(
                    name="garbled",
                    task="generate_data",
                    params={},
                    cron="bogus",
                    timezone="Nowhere/Never",
                ),
                Schedule(name="gone", task="removed_task", params={}, every_s=1),
                Schedule(
                    name="bad-params",
                    task="generate_data",
                    params={"rows": "many"},
                    every_s=60,
                ),
            ]
        )
        db.session.commit()
    beat = start_beat()
    good = make_schedule(client, "still-good")
    wait_for(lambda: len(fired(app, good["id"])) >= 3, 40)
    log = beat.log()
    assert "schedule" in log and "skipped" in log
    assert "paused: its task 'removed_task' no longer exists" in log
    # Each problem is logged once, not on every pass.
    assert log.count("no longer exists") == 1
    # The fire with parameters its task refuses is one run that says why.
    with app.app_context():
        bad_id = db.session.scalar(
            select(Schedule.id).where(Schedule.name == "bad-params")
        )
    (bad,) = wait_for(lambda: [r for r in fired(app, bad_id) if r.finished], 30)
    assert bad.state == "FAILURE" and "rows" in bad.error_message
    assert beat.alive()


@pytest.mark.timeout(300)
def test_two_beats_send_each_fire_once_and_the_second_takes_over(
    app, client, worker_process, start_beat
):
    beats = [start_beat(), start_beat()]
    holder = wait_for(lambda: next((b for b in beats if b.holds_lock()), None), 60)
    (other,) = [b for b in beats if b is not holder]
    schedule = make_schedule(client, "two-beats")
    sid = schedule["id"]
    wait_for(lambda: len(fired(app, sid)) >= 4, 40)
    sends = "Sending due task two-beats "
    assert sends in holder.log() and sends not in other.log()

    holder.kill()  # SIGKILL: the lock stays until it times out
    killed_at = utcnow()
    last = fired(app, sid)[-1].fire_at
    wait_for(lambda: sends in other.log(), 60)
    runs = wait_for(
        lambda: (
            (r := [x for x in fired(app, sid) if x.fire_at > last])
            and len(r) >= 2
            and r
        ),
        40,
    )
    # The new sender sends the latest fire once, then every interval.
    assert runs[0].fire_at > killed_at + timedelta(seconds=10)
    assert gaps(runs) == [float(INTERVAL)] * (len(runs) - 1)
    every = fired(app, sid)
    assert len({r.fire_at for r in every}) == len(every)
    assert other.log().count(sends) + holder.log().count(sends) >= len(every)


def test_the_same_fire_sent_twice_is_one_run(app, client, worker):
    schedule = make_schedule(client, "duplicated", every_s=3600)
    client.patch(schedule["url"], json={"enabled": False})
    celery_app = app.extensions["celery"]
    fire_at = datetime(2026, 12, 1, 2, 0).isoformat() + "Z"

    def send(at: str):
        return celery_app.send_task(
            "generate_data",
            kwargs={"rows": 1, "seconds": 0},
            task_id=str(uuid.uuid4()),
            headers={
                SOURCE_HEADER: "beat",
                SCHEDULE_HEADER: str(schedule["id"]),
                FIRE_HEADER: at,
            },
        )

    first, second = send(fire_at), send(fire_at)
    assert first.get(timeout=30) == {"rows": 1, "seconds": 0.0} or first.get()
    assert second.get(timeout=30) is None  # dropped: that fire has its run
    (run,) = fired(app, schedule["id"])
    assert run.id == first.id and run.fire_at == datetime(2026, 12, 1, 2, 0)
    # Another fire time is another run.
    send(datetime(2026, 12, 2, 2, 0).isoformat() + "Z").get(timeout=30)
    assert len(fired(app, schedule["id"])) == 2
