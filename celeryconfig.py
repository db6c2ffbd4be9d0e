"""Celery's static settings. The factory adds the broker URL, the result backend and
the schedule interval from the app's config, so nothing here reads the environment."""

from datetime import timedelta

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
broker_transport_options = {"visibility_timeout": 1800}
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

# An unreachable Redis must fail a connect in seconds, not hang a web request.
redis_socket_connect_timeout = 2

# Keep retrying the broker at startup instead of exiting (Celery 6 default).
broker_connection_retry_on_startup = True

# Events let Flower and `celery events` see our tasks.
worker_send_task_events = True
task_send_sent_event = True

timezone = "UTC"
enable_utc = True

# The schedule; the factory sets the generate_data interval from SCHEDULE_SECONDS and
# the prune age from PRUNE_AFTER_DAYS.
beat_schedule = {
    "generate-data": {
        "task": "generate_data",
        "schedule": 90.0,
        "kwargs": {},
        # The worker records runs it has no row for under this source.
        "options": {"headers": {"myapp_source": "beat"}},
    },
    "prune-runs": {
        "task": "prune_runs",
        "schedule": timedelta(days=1),
        "kwargs": {"older_than_days": 30},
        "options": {"headers": {"myapp_source": "beat"}},
    },
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
