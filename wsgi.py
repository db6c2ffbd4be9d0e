"""The one app: gunicorn serves `app`, the worker and beat run `celery_app`."""

from myapp import create_app

app = create_app()
celery_app = app.extensions["celery"]
