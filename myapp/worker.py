"""The Celery side of the app: one Celery app per Flask app (`FlaskTask` runs every
task inside the Flask app context), each task definition registered as a thin edge
over `runs.execute_run`, and the maintenance tasks beat sends."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import worker_process_init, worker_ready
from flask import Flask, current_app
from kombu import Queue

from myapp import metrics, runs
from myapp.beat import quiet_routine_logs
from myapp.extensions import db, get_store
from myapp.runs import reaper
from myapp.tasks import TaskDefinition, task_registry

log = logging.getLogger(__name__)

# Retries for a run whose Redis or broker went away mid-run.
MAX_RETRIES = 5


def celery_init_app(app: Flask) -> Celery:
    """Build the app's Celery app from celeryconfig.py plus the app's config."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

        def on_failure(self, exc: Any, task_id: str, *_: Any) -> None:
            # A task killed at its hard limit (it ignored the soft one) never gets
            # to record that; the worker's main process does, so its row does not
            # stay STARTED for the reaper to run it again.
            if isinstance(exc, TimeLimitExceeded):
                with app.app_context():
                    runs.fail_run(
                        task_id,
                        "TimeLimitExceeded",
                        f"the run took longer than its hard time limit "
                        f"({float(exc.args[0] if exc.args else 0):g} s) and was "
                        "stopped",
                    )

    celery_app = Celery(app.import_name, task_cls=FlaskTask)
    celery_app.config_from_object("celeryconfig")
    celery_app.conf.update(
        broker_url=app.config["REDIS_URL"],
        result_backend=app.config["REDIS_URL"],
        redbeat_redis_url=app.config["REDIS_URL"],
        **app.config.get("CELERY", {}),
    )
    # Beat reads the schedules table through this app (myapp.schedules.sender).
    celery_app.flask_app = app
    with app.app_context():
        definitions = list(task_registry().values())
    _route(celery_app, definitions)
    for definition in definitions:
        _register(celery_app, definition)
    _register_maintenance(celery_app)
    quiet_routine_logs()

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_: Any) -> None:
        # A forked pool process must not share the parent's database sockets.
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)

    port = app.config["METRICS_PORT"]
    if port:

        @worker_ready.connect(weak=False)
        def _serve_metrics(**_: Any) -> None:
            # In the worker's main process: the pool processes write their figures
            # to PROMETHEUS_MULTIPROC_DIR, this thread serves them all.
            metrics.serve_host_metrics(port)

    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def _route(celery_app: Celery, definitions: list[TaskDefinition]) -> None:
    """Send each task that names a queue there, by name: admission, beat and other
    Celery clients all send by name. Its queue is declared like ours (its own
    routing key), so workers started with `--queues` and the reaper's look at the
    queues both see it."""
    conf = celery_app.conf
    declared = {queue.name for queue in conf.task_queues}
    exchange = next(iter(conf.task_queues)).exchange
    extra = [
        Queue(name, exchange, routing_key=name)
        for name in dict.fromkeys(d.queue for d in definitions if d.queue)
        if name not in declared
    ]
    routes = {d.name: {"queue": d.queue} for d in definitions if d.queue}
    conf.task_queues = (*conf.task_queues, *extra)
    conf.task_routes = (routes, conf.task_routes)


def _register(celery_app: Celery, definition: TaskDefinition) -> None:
    """The Celery task for a definition: a thin edge over runs.execute_run."""

    def run_task(self: Task, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        try:
            return runs.execute_run(
                definition,
                request.id,
                kwargs,
                args=args,
                source=getattr(request, runs.SOURCE_HEADER, None) or "external",
                worker=request.hostname,
                fire=runs.Fire.from_headers(
                    getattr(request, runs.SCHEDULE_HEADER, None),
                    getattr(request, runs.FIRE_HEADER, None),
                ),
            )
        except runs.RunBusy as exc:
            # Another delivery of this run is alive; look again once its lease ends.
            lease = current_app.config["RUN_LEASE_SECONDS"]
            raise self.retry(
                exc=exc, countdown=lease, max_retries=MAX_RETRIES
            ) from None
        except Exception as exc:
            if not runs.is_transient(exc):
                raise
            if request.retries >= MAX_RETRIES:
                runs.fail_run(
                    request.id, type(exc).__name__, f"gave up after retries: {exc}"
                )
                raise
            runs.mark_retry(request.id, f"retrying: {exc}")
            raise self.retry(exc=exc, countdown=min(2**request.retries, 30)) from None

    run_task.__name__ = definition.name
    run_task.__doc__ = definition.description
    # shared=False: otherwise Celery hands this closure to every app finalized later
    # in the process, and the first app registered wins the name in all of them.
    limits = {}
    if definition.time_limit is not None:
        limits = {
            "time_limit": definition.time_limit,
            "soft_time_limit": definition.soft_time_limit,
        }
    # throws: a run ending for a reason it states (a cancel, invalid parameters) is
    # routine; Celery logs it as one INFO line instead of ERROR and a traceback.
    celery_app.task(
        name=definition.name,
        bind=True,
        shared=False,
        throws=(runs.RunFailed,),
        **limits,
    )(run_task)


# Maintenance passes are short; a stuck one must not hold a pool process for long.
_MAINTENANCE = {
    "ignore_result": True,
    "shared": False,
    "soft_time_limit": 60,
    "time_limit": 90,
}


def _register_maintenance(celery_app: Celery) -> None:
    @celery_app.task(name="myapp.dispatch_pending", **_MAINTENANCE)
    def dispatch_pending() -> int:
        """Send the outbox: PENDING runs whose message never reached the broker."""
        sent = runs.dispatch_pending()
        if sent:
            log.info("outbox: sent %d pending runs", sent)
        return sent

    @celery_app.task(name="myapp.reap_runs", **_MAINTENANCE)
    def reap_runs() -> dict[str, list[str]]:
        """Send again or fail the runs whose worker is gone (myapp.runs.reaper)."""
        report = reaper.reap_runs()
        return {"resent": report.resent, "failed": report.failed}

    @celery_app.task(name="myapp.maintain_data", **_MAINTENANCE)
    def maintain_data() -> dict[str, int]:
        """Finish indexing runs whose worker died mid-commit, then drop the oldest
        runs beyond DATA_MAX_ROWS; in short steps, for at most ~15 s, so the other
        maintenance passes are not held up (each pass of 500-row steps drops well
        over a million rows)."""
        store = get_store()
        indexing = store.index_pending(seconds=5)
        limit = current_app.config["DATA_MAX_ROWS"]
        dropped = store.trim(limit, seconds=10) if limit else 0
        if dropped:
            log.info("data set: dropped the oldest %d rows (DATA_MAX_ROWS)", dropped)
        return {"dropped": dropped, "still_indexing": indexing}
