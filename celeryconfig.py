"""Celery's static settings. The factory adds the broker URL, the result backend and
the schedule interval from the app's config, so nothing here reads the environment."""

from datetime import timedelta

from kombu import Exchange, Queue

from myapp.redis_clients import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS

# Messages are JSON only: a pickled message on the queue is refused, never executed.
accept_content = ["json"]
task_serializer = "json"
result_serializer = "json"
result_accept_content = ["json"]

# Ack after the task returns, and put the message back when the pool process running
# it dies (SIGKILL, OOM): with acks_late alone such a run would be acked and lost.
task_acks_late = True
task_reject_on_worker_lost = True

# A worker reserves one message at a time, so a long run does not hold others hostage.
worker_prefetch_multiplier = 1

# Celery's own state shows STARTED too (Flower, Dash background callbacks).
task_track_started = True

# Results (ours and Dash's background-callback keys) leave Redis after a day.
result_expires = timedelta(days=1)

# The longest run allowed is 600 s of pacing plus the append; the soft limit lets the
# task record FAILURE itself, the hard limit kills a task that ignores it.
task_soft_time_limit = 660
task_time_limit = 720

# Redis redelivers an unacked message after the visibility timeout. It must be well
# above the hard time limit, or a long run is delivered again while it still runs.
# A read or write that gets no answer in 5 s fails, so a start on a web host whose
# Redis link is cut (held open, no bytes) is kept by the outbox and answered 202
# instead of hanging the request (the worker's own blocking reads are 1 s BRPOPs).
broker_transport_options = {
    "visibility_timeout": 1800,
    "socket_timeout": READ_TIMEOUT_SECONDS,
    "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
}
# The backend's own reconnect policy (20 tries, 1 s apart) would hold a caller ~20 s
# when Redis is down; fail within about a second instead: the run row, not the
# result key, is the status of record, and callers answer 503 or keep the outbox.
result_backend_transport_options = {
    "visibility_timeout": 1800,
    "retry_policy": {
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 0.5,
    },
}

# An unreachable Redis must fail a connect in seconds, not hang a web request; a
# silent one (a cut link) a read.
redis_socket_connect_timeout = CONNECT_TIMEOUT_SECONDS
redis_socket_timeout = READ_TIMEOUT_SECONDS

# Keep retrying the broker at startup instead of exiting (Celery 6 default).
broker_connection_retry_on_startup = True
# Keep retrying after a lost connection for as long as Redis is away (Celery's
# default gives up after 100 tries and the worker exits), through a consumer that
# survives losing a connection with a run in flight and tries every 2 s
# (myapp.worker.Consumer).
broker_connection_max_retries = None
worker_consumer = "myapp.worker:Consumer"

# When the broker connection drops, let running tasks finish rather than cancel
# them (Celery 6 will cancel by default). A run's state lives in the database, not
# the connection: it finishes and records its result, and the message it could not
# ack is delivered again after the visibility timeout, where the claim sees a
# finished run and returns its result without running it again. Cancelling would
# throw away every long run in flight on a short Redis blip and leave it to the
# reaper to start over.
worker_cancel_long_running_tasks_on_connection_loss = False

# Two queues: user runs and Dash callbacks on `celery`; the maintenance passes
# (outbox, reaper, pruning and any other `myapp.*` housekeeping) on `maintenance`,
# which a small worker of its own consumes (Procfile `maintenance`), so two long runs
# holding every slot of the main workers cannot hold back the passes that recover
# runs. The main workers consume both queues, so a deployment without the small
# worker still runs maintenance, only without that guarantee.
task_default_queue = "celery"
# Each queue is bound by its own routing key (Celery would bind both with the default
# key "celery" otherwise).
_exchange = Exchange("celery", type="direct")
task_queues = (
    Queue("celery", _exchange, routing_key="celery"),
    Queue("maintenance", _exchange, routing_key="maintenance"),
)
# A task's own queue (`@task(queue=...)`, prune_runs's maintenance) is added by the
# factory, which routes it by name and declares the queue like these two.
task_routes = {
    "myapp.*": {"queue": "maintenance"},
}

# Events let Flower and `celery events` see our tasks.
worker_send_task_events = True
task_send_sent_event = True

timezone = "UTC"
enable_utc = True

# beat: the schedule and a lock live in Redis (celery-redbeat), so any number of beat
# processes may run and exactly one, the lock holder, sends. The holder wakes at
# least every `beat_max_loop_interval` seconds and renews the lock for
# `redbeat_lock_timeout`; the others try to take the lock every
# `beat_max_loop_interval`. So when the holder dies, another sends within
# redbeat_lock_timeout + beat_max_loop_interval = 30 s. Each entry's last send time
# is written to Redis before its message is sent, so the new holder does not send
# it again. The factory points redbeat_redis_url at REDIS_URL.
beat_scheduler = "myapp.beat:Scheduler"
beat_max_loop_interval = 5
redbeat_lock_timeout = 25
redbeat_key_prefix = "myapp:beat:"
# Connects fail fast like the app's own. No `retry_period`: redbeat's retries cover
# only some of its calls, none of the lock's, and block a pass for their whole period;
# myapp.beat.Scheduler rides out an outage of any length in its own loop instead.
redbeat_redis_options = {
    "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "socket_timeout": READ_TIMEOUT_SECONDS,
}

# The maintenance passes: in code, not schedules users edit. The schedules users
# edit (generate-data and prune-runs among them) are rows in the database, which beat
# reads on every pass (myapp/schedules/sender.py).
beat_schedule = {
    # The outbox: send runs whose message never reached the broker.
    "dispatch-pending": {
        "task": "myapp.dispatch_pending",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    # The reaper: runs whose worker is gone are sent again or end FAILURE.
    "reap-runs": {
        "task": "myapp.reap_runs",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    # The data set: retention (DATA_MAX_ROWS) and indexing left by a killed worker.
    "maintain-data": {
        "task": "myapp.maintain_data",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}
