"""Dash's CeleryManager, bound to one Flask app's Celery app and nothing else.

Upstream keeps process-wide state that breaks "create_app() many times per process":

- `BaseBackgroundCallbackManager.managers` / `.functions` are class-level lists: every
  new manager registers every background callback ever declared in the process, and
  every declaration is registered in every manager ever built.
- `_make_job_fn` registers each job with Celery's default `shared=True`, so the closure
  of the first app is handed to every Celery app finalized later, and a task name
  keeps pointing at the first app's code.

`AppCeleryManager` starts empty, `declaring(manager)` makes it the only manager Dash
sees while one app declares its callbacks, and jobs are registered `shared=False` on
this app's Celery app only. It also fixes `get_updated_props` (see there), and
keeps credentials out of the jobs' messages (`call_job_fn`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from celery import Celery
from celery.backends.base import DisabledBackend
from dash.background_callback.managers import BaseBackgroundCallbackManager
from dash.background_callback.managers.celery_manager import (
    CeleryManager,
    _make_job_fn,
)
from flask import Flask

from myapp import runs

log = logging.getLogger(__name__)

JOB_PREFIX = "background_callback_"
# What Dash copies from the request into a background job's context that may carry
# credentials.
CREDENTIAL_CONTEXT = frozenset(("cookies", "headers"))


class _UnsharedTasks:
    """The Celery app as `_make_job_fn` sees it: tasks are registered shared=False."""

    def __init__(self, celery_app: Celery):
        self._app = celery_app
        self.backend = celery_app.backend

    def task(self, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        return self._app.task(shared=False, **options)


class AppCeleryManager(CeleryManager):
    """A CeleryManager that knows only the callbacks of its own Dash app."""

    def __init__(self, flask_app: Flask, celery_app: Celery):
        # BaseBackgroundCallbackManager.__init__ is skipped on purpose: it appends this
        # manager to the class-level list and registers every callback declared so far
        # in the process, other apps' closures included.
        if isinstance(celery_app.backend, DisabledBackend):
            raise ValueError("the Celery app needs a result backend")
        self.handle = celery_app
        self.expire = None
        self.cache_by = None
        self.func_registry: dict[str, Any] = {}
        self.flask_app = flask_app

    def call_job_fn(self, key: str, job_fn: Any, args: Any, context: Any) -> str:
        # Dash puts the whole request context in the job's Celery message, the
        # user's cookies (the session) and headers (Authorization) included, and
        # that message sits in Redis. Our callbacks never read them in the job: the
        # run row says who started it. Send the context without them.
        context = {
            k: v for k, v in dict(context).items() if k not in CREDENTIAL_CONTEXT
        }
        return super().call_job_fn(key, job_fn, args, context)

    def make_job_fn(self, fn: Callable[..., Any], progress: bool, key: Any = None):
        return _make_job_fn(fn, _UnsharedTasks(self.handle), progress, key)

    def get_updated_props(self, key: str) -> dict[str, Any]:
        # Upstream reads the `-set_props` key and deletes the *result* key
        # (plotly/dash#3104): a job finishing between the result read and this call
        # loses its output, and set_props are re-sent on every poll. Read and delete
        # the set_props key in one transaction instead; the job writes only the latest
        # app-status there, so what the page gets is always the newest line.
        pipe = self.handle.backend.client.pipeline()
        pipe.get(self._make_set_props_key(key))
        pipe.delete(self._make_set_props_key(key))
        raw, _ = pipe.execute()
        return json.loads(raw) if raw else {}

    def job_names(self) -> list[str]:
        """The Celery task names of this app's background callbacks."""
        return [JOB_PREFIX + key for key in self.func_registry]

    def on_task_revoked(
        self, sender: Any = None, request: Any = None, **_: Any
    ) -> None:
        """`task_revoked` receiver (worker main process): a background job that Dash
        terminated (cancel, or a new click) never reports again, so end its run
        REVOKED here instead of leaving it STARTED. The run's id is in the job's
        input (`{"run_id": …}`, see the background callback)."""
        if (
            sender is None
            or request is None
            or getattr(sender, "app", None) is not (self.handle)
        ):
            return
        if not str(getattr(sender, "name", "")).startswith(JOB_PREFIX):
            return
        run_id = _run_id_of_job(request)
        if run_id is None:
            return
        with self.flask_app.app_context():
            run = runs.get_run(run_id)
            if run is None or run.finished:
                return
            # It may finish while the signal is on its way: then there is no cancel.
            # Only the page that started a job holds its signed handle, so whoever
            # had it terminated is the user who started the run.
            with suppress(runs.RunFinished):
                runs.revoke_run(run, cancelled_by=run.created_by)


def _run_id_of_job(request: Any) -> str | None:
    """The run id a background job was given: Dash calls a job with
    (result_key, progress_key, callback_args, context), callback_args being the
    callback's inputs, here one `{"run_id": …}` request."""
    args = getattr(request, "args", None) or ()
    if len(args) < 3 or not isinstance(args[2], list | tuple) or not args[2]:
        return None
    first = args[2][0]
    run_id = first.get("run_id") if isinstance(first, dict) else None
    return run_id if isinstance(run_id, str) else None


@contextmanager
def declaring(manager: AppCeleryManager) -> Iterator[None]:
    """While one Dash app declares its callbacks, `manager` is the only manager Dash's
    class-level registry knows; afterwards the registry is as it was, so no other
    app's manager sees these callbacks and this one sees no one else's."""
    cls = BaseBackgroundCallbackManager
    saved_managers, saved_functions = cls.managers[:], cls.functions[:]
    cls.managers[:] = [manager]
    try:
        yield
    finally:
        cls.managers[:] = saved_managers
        cls.functions[:] = saved_functions
