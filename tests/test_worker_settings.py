"""The worker program's settings come from the settings table, not the Procfile:
WORKER_CONCURRENCY, WORKER_QUEUES and WORKER_NAME reach the Procfile's `worker`,
MAINTENANCE_NAME its `maintenance`, and a command line's own --queues and
--hostname still win."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from celery.utils.nodenames import default_nodename, host_format

from myapp.settings import read_settings
from myapp.worker import apply_program_settings
from tests.support import Service, Worker, app_environ, procfile_command


def consumed(celery_app) -> set[str]:
    return set(celery_app.amqp.queues.consume_from)


def test_the_table_fills_in_what_the_command_line_left_out(app):
    celery_app = app.extensions["celery"]
    program = read_settings({"WORKER_QUEUES": "celery", "WORKER_NAME": "w1@%h"})
    worker = SimpleNamespace(
        app=celery_app, hostname=host_format(default_nodename(None))
    )
    apply_program_settings(worker, {"queues": None}, program)
    assert worker.hostname == f"w1@{socket.gethostname()}"
    assert consumed(celery_app) == {"celery"}


def test_the_maintenance_worker_takes_its_own_name(app):
    celery_app = app.extensions["celery"]
    program = read_settings({"MAINTENANCE_NAME": "m1@%h"})
    worker = SimpleNamespace(
        app=celery_app, hostname=host_format(default_nodename(None))
    )
    apply_program_settings(worker, {"queues": ["maintenance"]}, program)
    assert worker.hostname == f"m1@{socket.gethostname()}"


def test_the_command_lines_queues_and_name_win(app):
    celery_app = app.extensions["celery"]
    everything = consumed(celery_app)
    program = read_settings({"WORKER_QUEUES": "celery", "WORKER_NAME": "w1@%h"})
    worker = SimpleNamespace(app=celery_app, hostname="reports@somewhere")
    apply_program_settings(worker, {"queues": ["reports"]}, program)
    assert worker.hostname == "reports@somewhere"
    # Celery selects the command line's queues itself, later.
    assert consumed(celery_app) == everything


# Two worker starts: on a busy 2-core machine each can take 40 s.
@pytest.mark.timeout(300)
def test_procfile_workers_take_their_settings_from_the_environment(app, tmp_path):
    host = socket.gethostname()
    env = {**app_environ(app), "WORKER_QUEUES": "celery,extra"}
    maintenance_env = {**app_environ(app), "MAINTENANCE_NAME": "upkeep@%h"}
    argv = procfile_command("maintenance", maintenance_env)
    maintenance = Service("upkeep", argv, maintenance_env, tmp_path / "upkeep.log")
    worker = Worker("sized", env, tmp_path / "sized.log", concurrency=3)
    try:
        maintenance.wait_until(lambda: " ready." in maintenance.log(), "ready")
        inspect = app.extensions["celery"].control.inspect(
            destination=[f"sized@{host}", f"upkeep@{host}"], timeout=10
        )
        stats, queues = inspect.stats(), inspect.active_queues()
    finally:
        worker.stop()
        maintenance.stop()
    # WORKER_CONCURRENCY=3: three pool processes, not the table's two.
    assert stats[f"sized@{host}"]["pool"]["max-concurrency"] == 3
    assert len(stats[f"sized@{host}"]["pool"]["processes"]) == 3
    assert {q["name"] for q in queues[f"sized@{host}"]} == {"celery", "extra"}
    # The maintenance line: one process, its queue alone, MAINTENANCE_NAME.
    assert stats[f"upkeep@{host}"]["pool"]["max-concurrency"] == 1
    assert {q["name"] for q in queues[f"upkeep@{host}"]} == {"maintenance"}
