"""Concurrent writers append exactly once; the worker refuses pickled messages."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import uuid

from kombu import Connection

from myapp.extensions import db, get_store
from myapp.models import Run
from tests.support import ROOT, add_schedule, app_environ, settle, wait_for


def test_four_writers_and_a_scheduled_run_give_an_exact_row_count(
    make_app, shipped_redis, workers, tmp_path
):
    app = make_app(REDIS_URL=shipped_redis.url)
    add_schedule(app, 2)
    workers(app, "w1")
    accepted: list[str] = []
    errors: list[object] = []

    def writer(rows: int) -> None:
        client = app.test_client()
        for _ in range(4):
            response = client.post(
                "/api/tasks/generate_data/runs", json={"rows": rows, "seconds": 0}
            )
            if response.status_code != 202:
                errors.append(response.get_json())
            else:
                accepted.append(response.get_json()["id"])

    # beat, the real process, sends generate_data every 2 s while the writers write.
    env = app_environ(app)
    with open(tmp_path / "beat.log", "wb") as log:
        beat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "wsgi:celery_app",
                "beat",
                "-s",
                str(tmp_path / "beat-schedule"),
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        threads = [
            threading.Thread(target=writer, args=(rows,)) for rows in (11, 13, 17, 19)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        def scheduled() -> list[str]:
            with app.app_context():
                ids = db.session.scalars(
                    db.select(Run.id).where(Run.source == "beat")
                ).all()
                db.session.remove()
            return list(ids)

        wait_for(scheduled, 60, 0.2, "a scheduled run")
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(15)

    assert errors == [] and len(accepted) == 16
    beat_ids = scheduled()
    done, _ = settle(app, accepted + beat_ids, timeout=90)
    assert {r.state for r in done.values()} == {"SUCCESS"}, done
    expected = sum(r.params.get("rows", 10) for r in done.values())
    with app.app_context():
        store = get_store()
        assert store.total() == expected == 4 * (11 + 13 + 17 + 19) + 10 * len(beat_ids)
        rows = store.page(limit=1000, order="asc").rows
    # Ids are dense 1..n and every row belongs to one of the runs: no loss, no
    # duplicate, no interleaving lost to a race.
    assert [r["id"] for r in rows] == list(range(1, expected + 1))
    assert {r["run_id"] for r in rows} == set(done)


def test_a_pickled_message_is_refused_and_the_worker_keeps_going(
    make_app, shipped_redis, workers
):
    app = make_app(REDIS_URL=shipped_redis.url)
    worker = workers(app, "w1")
    evil_id = str(uuid.uuid4())
    with Connection(shipped_redis.url) as connection:
        producer = connection.Producer()
        # A protocol-2 Celery message whose body is a pickle. This one is harmless;
        # an attacker's would run code when unpickled.
        producer.publish(
            pickle.dumps(((), {"rows": 1, "seconds": 0}, {})),
            exchange="",
            routing_key="celery",
            headers={"task": "generate_data", "id": evil_id, "lang": "py"},
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
    wait_for(lambda: "untrusted content" in worker.log(), 30, 0.2, "the refusal logged")

    client = app.test_client()
    response = client.post(
        "/api/tasks/generate_data/runs", json={"rows": 2, "seconds": 0}
    )
    done, _ = settle(app, [response.get_json()["id"]], timeout=60)
    assert [r.state for r in done.values()] == ["SUCCESS"]
    with app.app_context():
        assert db.session.get(Run, evil_id) is None  # never ran, never adopted
        assert get_store().total() == 2
