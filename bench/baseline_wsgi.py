"""gunicorn and the Celery worker load the baseline from here, like wsgi.py."""

import os

from bench.baseline import create_baseline

app, celery_app = create_baseline(
    os.environ["REDIS_URL"], os.environ.get("DATABASE_URL")
)
