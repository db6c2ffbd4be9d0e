"""gunicorn settings for the `web` process (read at gunicorn start, not by the app)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Requests never wait on a task: anything slower than this is a bug worth a restart.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
# Platforms send SIGTERM then SIGKILL after ~30 s: finish requests well before that.
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
# Each worker builds its own app: no database or Redis socket crosses a fork.
preload_app = False
