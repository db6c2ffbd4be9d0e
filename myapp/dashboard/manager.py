"""Dash's CeleryManager, bound to one Flask app's Celery app and nothing else.

Upstream keeps process-wide state that breaks "create_app() many times per process":

- `BaseBackgroundCallbackManager.managers` / `.functions` are class-level lists: every
  new manager registers every background callback ever declared in the process, and
  every declaration is registered in every manager ever built.
- Its job factory registers each job with `celery_app.task(...)`, whose default
  `shared=True` hands the closure of the first app to every Celery app finalized
  later, so a task name keeps pointing at the first app's code.

`AppCeleryManager` starts empty, `declaring(manager)` makes it the only manager Dash
sees while one app declares its callbacks, and the manager's Celery handle is
`UnsharedTaskApp`, so upstream's own job factory registers jobs `shared=False` on
this app's Celery app only. It also fixes `get_updated_props` (see there), and
keeps credentials out of the jobs' messages (`call_job_fn`).

Dash internals this module relies on (checked against dash 4.4.x): the class-level
lists above, `CeleryManager.handle` being what the job factory and every other
method of the manager call, `_make_set_props_key` (where jobs write `set_props`),
and the job's call signature (result key, progress key, inputs, context), whose
context holds the request's cookies and headers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from celery import Celery
from dash.background_callback.managers import BaseBackgroundCallbackManager
from dash.background_callback.managers.celery_manager import CeleryManager
from flask import Flask

from myapp import runs

log = logging.getLogger(__name__)

JOB_PREFIX = "background_callback_"
# What Dash copies from the request into a background job's context that may carry
# credentials.
CREDENTIAL_CONTEXT = frozenset(("cookies", "headers"))


class UnsharedTaskApp:
    """A Celery app whose `.task()` registers tasks `shared=False`; everything else
    (backend, control, AsyncResult, …) is the app's own."""

    def __init__(self, celery_app: Celery):
        self._app = celery_app

    def task(self, *args: Any, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        return self._app.task(*args, shared=False, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


class AppCeleryManager(CeleryManager):
    """A CeleryManager that knows only the callbacks of its own Dash app."""

    def __init__(self, flask_app: Flask, celery_app: Celery):
        # Upstream's __init__ checks the result backend, then appends this manager
        # to the class-level list and registers every callback declared so far in
        # the process, other apps' closures included: run it on an empty registry.
        with _registry_of():
            super().__init__(celery_app)
        self.handle = UnsharedTaskApp(celery_app)
        self.celery_app = celery_app
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
            or getattr(sender, "app", None) is not self.celery_app
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
    with _registry_of(manager):
        yield


@contextmanager
def _registry_of(*managers: BaseBackgroundCallbackManager) -> Iterator[None]:
    cls = BaseBackgroundCallbackManager
    saved_managers, saved_functions = cls.managers[:], cls.functions[:]
    cls.managers[:] = managers
    cls.functions[:] = []
    try:
        yield
    finally:
        cls.managers[:] = saved_managers
        cls.functions[:] = saved_functions
