"""Dash on the Flask server: `/dash/` (run generate_data, the data grid),
`/dash/history` (every run, from every source), `/dash/tasks` and a page per task
at `/dash/tasks/<name>`, generated from its declaration.

Pages are routed by our own callback on `dcc.Location`, not `dash.register_page`:
Dash's page registry (`dash.page_registry`) is global to the process, while
`create_app()` builds many Dash apps in one process (every test does), each with
its own tasks; a page per task is one layout function of the task's definition.

`init_dash(app)` builds one Dash app per Flask app, with a background-callback manager
on the app's own Celery app, and binds every callback to that Dash app, so
`create_app()` can run many times in one process without apps sharing callbacks.
"""

from __future__ import annotations

import json

import dash
from celery.signals import task_revoked
from dash import html
from flask import Flask

from myapp.dashboard import layout, polling, task_page
from myapp.dashboard.callbacks import register_callbacks
from myapp.dashboard.guard import guard_init_app
from myapp.dashboard.manager import AppCeleryManager, declaring
from myapp.dashboard.run_callbacks import JOB_INPUTS
from myapp.dashboard.site import SiteDash


def init_dash(app: Flask) -> dash.Dash:
    """Mount the Dash pages at /dash/ on `app`; keep the Dash app in app.extensions."""
    manager = AppCeleryManager(app, app.extensions["celery"])
    dash_app = SiteDash(
        __name__,
        server=app,
        url_base_pathname=layout.DASH_PATH,
        title="Dash",
        background_callback_manager=manager,
        # Pages are routed by dcc.Location, so their ids are not in the shell.
        suppress_callback_exceptions=True,
        # How assets/run_poll.js spaces the polls of a background job.
        meta_tags=[
            {"name": "myapp-run-poll", "content": json.dumps(polling.browser_policy())}
        ],
    )
    dash_app.layout = layout.shell()
    dash_app.validation_layout = html.Div(
        [
            layout.shell(),
            layout.main_page(),
            layout.history_page(),
            task_page.not_found(""),
        ]
    )
    with declaring(manager):
        register_callbacks(dash_app, manager, app.extensions["tasks"])
    # Weak (bound method): the receiver goes away with this app.
    task_revoked.connect(manager.on_task_revoked)
    # Dash sets itself up on its first request without a lock: on a threaded server
    # (gunicorn --threads) concurrent first requests see half-registered resources
    # and answer 500 for the JS bundles. Set it up now, before any request; Dash
    # has no public call for it, hence the private `_setup_server`.
    with app.test_request_context(dash_app.config.url_base_pathname):
        dash_app._setup_server()
    # After setup: Dash adds its own cancel callback there.
    guard_init_app(app, dash_app, job_inputs=JOB_INPUTS)
    app.extensions["dash"] = dash_app
    return dash_app
