"""The Celery side of the app: one Celery app per Flask app (`FlaskTask` runs every
task inside the Flask app context), each task definition registered as a thin edge
over `runs.execute_run`, and the maintenance tasks beat sends."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import (
    celeryd_init,
    worker_init,
    worker_process_init,
    worker_ready,
)
from celery.utils.nodenames import default_nodename, host_format
from celery.utils.threads import bound_open_broker_sockets
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import COLLECT_SOCKET_TIMEOUT
from celery.worker.request import Request as CeleryRequest
from flask import Flask, current_app
from kombu import Queue

from myapp import metrics, redis_clients, runs
from myapp.beat import quiet_routine_logs
from myapp.extensions import db, get_store
from myapp.runs import reaper
from myapp.settings import read_settings
from myapp.tasks import TaskDefinition, task_registry

log = logging.getLogger(__name__)

# Retries for a run whose Redis or broker went away mid-run.
MAX_RETRIES = 5
# While the broker is away, the worker tries to reconnect this often.
RECONNECT_SECONDS = 2
# The queue of the maintenance passes (celeryconfig's task_routes for `myapp.*`).
MAINTENANCE_QUEUE = "maintenance"


class Consumer(CeleryConsumer):
    """Celery's consumer (celeryconfig's `worker_consumer`), whose reconnection
    survives a broker that went away while a message was unacknowledged.

    On a lost connection Celery 5.7 first `collect()`s the connection, which closes
    its transport, then `close()`s it again; the second close restores the unacked
    messages through a channel whose transport is gone and raises AttributeError,
    which Celery does not expect there: "Unrecoverable error", the worker exits on
    the first Redis outage that finds a run in flight. Here the broken connection
    is discarded first, any error of its teardown logged and dropped (the messages
    stay in Redis's unacked set, restored after the visibility timeout; the reaper
    finds their runs sooner), and Celery's handler goes on with no connection to
    tear down.
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            bound_open_broker_sockets(connection, COLLECT_SOCKET_TIMEOUT)
            try:
                connection.collect(socket_timeout=COLLECT_SOCKET_TIMEOUT)
            except Exception as error:  # the connection is being thrown away
                log.debug("broker connection collect: %r", error)
            try:
                connection.close()
            except Exception as error:
                log.debug("broker connection close: %r", error)
        super().on_connection_error_after_connected(exc)

    def ensure_connected(self, conn: Any) -> Any:
        # kombu waits 2, 4, 6 … up to 30 s between attempts to reconnect, so a worker
        # could sit idle for half a minute after Redis is back; try every few seconds
        # instead, for as long as it takes (broker_connection_max_retries).
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=RECONNECT_SECONDS,
            interval_step=0,
            interval_max=RECONNECT_SECONDS,
        )
        return super().ensure_connected(conn)


class Request(CeleryRequest):
    """Celery's task request (every task's `Request`), whose late ack or reject of a
    message received on a connection that has since been lost is logged, not fatal.

    The message's channel belongs to the lost connection, whose transport Celery has
    closed: the Redis transport then fails with AttributeError instead of a
    connection error, and the worker's event loop, which expects only connection
    errors there, exits. The message is still in Redis's unacked set: it comes back
    after the visibility timeout, and its run row says whether it needs running.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection_errors = (*self._connection_errors, AttributeError)


def celery_init_app(app: Flask) -> Celery:
    """Build the app's Celery app from celeryconfig.py plus the app's config."""
    # This worker's node name (the `worker` its claims write), for writes made
    # outside a task's own request.
    node: list[str] = []
    celery_app = Celery(app.import_name, task_cls=_flask_task(app, node))
    celery_app.config_from_object("celeryconfig")
    # The worker program's settings (WORKER_*): read here, where the app is built,
    # from the settings table; its command line still wins over them.
    program = read_settings(os.environ)
    celery_app.conf.update(
        {
            # Broker, results and redbeat: REDIS_URL's server or the sentinels'
            # primary.
            **redis_clients.celery_config(app.config, celery_app.conf),
            "worker_concurrency": program["WORKER_CONCURRENCY"],
            "worker_soft_shutdown_timeout": float(program["WORKER_SHUTDOWN_SECONDS"]),
            **app.config.get("CELERY", {}),
        }
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
    _connect_signals(app, celery_app, node, program)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def _flask_task(app: Flask, node: list[str]) -> type[Task]:
    """The app's Task class: every task runs inside the Flask app context."""

    class FlaskTask(Task):
        Request = "myapp.worker:Request"

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

        def on_failure(self, exc: Any, task_id: str, *_: Any) -> None:
            # A task killed at its hard limit (it ignored the soft one) never gets
            # to record that; the worker's main process does, so its row does not
            # stay STARTED for the reaper to run it again.
            # Only while this worker's claim is the run's: a stale attempt (its host
            # was cut off and the run taken over elsewhere) changes nothing.
            if isinstance(exc, TimeLimitExceeded):
                with app.app_context():
                    runs.fail_run(
                        task_id,
                        "TimeLimitExceeded",
                        f"the run took longer than its hard time limit "
                        f"({float(exc.args[0] if exc.args else 0):g} s) and was "
                        "stopped",
                        workers=node or None,
                    )

    return FlaskTask


def _connect_signals(
    app: Flask, celery_app: Celery, node: list[str], program: Mapping[str, Any]
) -> None:
    """What a worker of this app does as it starts, and in each pool process."""

    @celeryd_init.connect(weak=False)
    def _program_settings(sender: Any, instance: Any, options: Any, **_: Any) -> None:
        if instance.app is celery_app:
            apply_program_settings(instance, options, program)

    @worker_init.connect(weak=False)
    def _remember_node(sender: Any, **_: Any) -> None:
        # A task's request may name the node ("celery@host") or only its host.
        name = str(getattr(sender, "hostname", "") or "")
        node[:] = [name, name.rpartition("@")[2]] if name else []

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


def apply_program_settings(
    worker: Any, options: Mapping[str, Any], program: Mapping[str, Any]
) -> None:
    """The `celery worker` program's queues and node name from the settings table,
    where its command line gives none: WORKER_QUEUES, and WORKER_NAME, or
    MAINTENANCE_NAME for a worker of the maintenance queue alone (the Procfile's
    `maintenance`). Celery has no configuration key for either, so this runs as
    the program starts (celeryd_init), before the worker reads them."""
    queues = options.get("queues")
    if not queues:
        queues = [q.strip() for q in program["WORKER_QUEUES"].split(",") if q.strip()]
        worker.app.amqp.queues.select(queues)
    # Celery's default name is what its command line holds when none was given.
    if worker.hostname == host_format(default_nodename(None)):
        alone = list(queues) == [MAINTENANCE_QUEUE]
        name = program["MAINTENANCE_NAME" if alone else "WORKER_NAME"]
        worker.hostname = host_format(default_nodename(name))


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
