"""gunicorn settings for the `web` process (read at gunicorn start, not by the app).

Logs: the access log goes to stdout, gunicorn's own log and the app's log (one line
per run transition, from `myapp.runs`) to stderr, so the platform collects both.
"""

import os

from myapp.settings import read_settings
from myapp.web.server import BufferingWorker

# PORT and WEB_*: the environment's values, else the settings table's defaults.
_settings = read_settings(os.environ)

bind = f"0.0.0.0:{_settings['PORT']}"
workers = _settings["WEB_CONCURRENCY"]
threads = _settings["WEB_THREADS"]
# gthread, but a thread only ever gets a whole request: the worker's event loop reads
# each head and body first, so slow clients cannot hold the threads. A request not
# whole this many seconds after its connection opened gets 408 (myapp/web/server.py).
worker_class = BufferingWorker.with_read_timeout(_settings["WEB_READ_TIMEOUT"])
# Requests never wait on a task: anything slower than this is a bug worth a restart.
timeout = _settings["WEB_TIMEOUT"]
# Platforms send SIGTERM then SIGKILL after ~30 s: finish requests well before that.
graceful_timeout = 20
# Recycle a worker now and then so slow memory growth cannot build up; the jitter
# keeps all workers from restarting at once. Rarely: a new worker builds the whole
# app (Dash, Plotly, Celery: ~1.5 s of CPU, preload_app is off), and a recycle
# closes its idle keep-alive connections, which a client sending at that moment
# sees as a dropped connection. At 2,000 requests a busy worker restarted every few
# seconds and spent ~20% of its CPU starting up (measured: 337 -> 419 starts/s
# without recycling); the memory benchmark shows no growth to recycle for.
max_requests = 20000
max_requests_jitter = 2000
# Files go out through the socket's own writes, so the worker's send timeout holds
# for them too (Python's sendfile loop waits for a stalled client forever).
sendfile = False
accesslog = "-"
errorlog = "-"
# Each worker builds its own app: no database or Redis socket crosses a fork.
preload_app = False
# The worker heartbeat file lives in memory, not on a possibly slow container disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
