"""HTML pages: the task forms, the run history and one run's live page.

Thin views over `myapp.runs`: the forms start, cancel and re-run runs through
admission and cancel (which check the signed-in user's role) and validate through the
task definitions (strings accepted for numbers), so a bad value gets the same
message as in the API. Pages offer only what the user may do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly
from flask import (
    Blueprint,
    Flask,
    abort,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.datastructures import MultiDict

from myapp import runs
from myapp.edge import current_requester
from myapp.models import SOURCES, STATES, Run
from myapp.runs.results import result_view
from myapp.tasks import (
    ParamField,
    TaskDefinition,
    ValidationError,
    get_definition,
    task_registry,
)
from myapp.web.inputs import idempotency_key, run_filter, run_or_404
from myapp.web.params import RUNS_QUERY, parse_query

bp = Blueprint("views", __name__)

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

# Hidden form fields that are not task parameters.
KEY_FIELD = "idempotency_key"
FORM_FIELDS = (KEY_FIELD, "csrf_token")
RECENT_RUNS = 10
PAGE_SIZE = 25
# The history page takes the API's filters and cursor; its page size is fixed.
_PAGE_QUERY = tuple(p for p in RUNS_QUERY if p.name != "limit")


@dataclass
class FormField:
    """One input of a task form: its parameter, what it shows now, its message."""

    spec: ParamField
    value: Any  # text; a list of texts for a multi-select; True/False for a checkbox
    error: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def selected(self, choice: str) -> bool:
        if isinstance(self.value, list):
            return choice in self.value
        return self.value == choice


@dataclass
class TaskForm:
    """A task's form: its fields, the one-time idempotency key and any messages."""

    definition: TaskDefinition
    fields: list[FormField]
    key: str
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def other_errors(self) -> dict[str, str]:
        """Messages for names that are not inputs of this form (unknown fields)."""
        names = {f.name for f in self.fields}
        return {k: v for k, v in self.errors.items() if k not in names}


def task_form(
    definition: TaskDefinition,
    submitted: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    key: str | None = None,
) -> TaskForm:
    """The form of a task, prefilled with defaults or with what was submitted."""
    submitted = submitted or {}
    errors = dict(errors or {})
    fields = [
        _form_field(spec, submitted.get(spec.name), errors.get(spec.name))
        for spec in definition.fields
    ]
    return TaskForm(definition, fields, key or new_key(), errors)


def _form_field(spec: ParamField, submitted: Any, error: str | None) -> FormField:
    if submitted is None:
        # A fresh form shows the defaults as a person would type them.
        default = spec.default
        if spec.kind == "bool":
            return FormField(spec, bool(default), error)
        if spec.multiple and spec.kind == "choice":
            return FormField(spec, [str(v) for v in default or []], error)
        return FormField(spec, spec.text(default) if default is not None else "", error)
    if spec.kind == "bool":
        return FormField(spec, str(submitted).lower() in ("true", "on", "1"), error)
    return FormField(spec, submitted, error)


def form_values(definition: TaskDefinition, form: MultiDict) -> dict[str, Any]:
    """What a task form sent, by parameter, as text: a checkbox's last value (its
    hidden "false" comes first, so unticked is false, not the default), a
    multi-select's list; names that are not parameters are kept, to be refused."""
    values: dict[str, Any] = {}
    for name in form:
        if name in FORM_FIELDS:
            continue
        spec = definition.field(name)
        given = form.getlist(name)
        if spec is not None and spec.kind == "bool":
            values[name] = given[-1]
        elif spec is not None and spec.multiple and spec.kind == "choice":
            values[name] = [v for v in given if v]
        else:
            values[name] = given[0]
    return values


def new_key() -> str:
    """A one-time key for a form: resubmitting the same form returns the same run."""
    return "form-" + uuid.uuid4().hex


# -- pages ---------------------------------------------------------------------


@bp.get("/")
def index():
    return _render_index({})


@bp.post("/tasks/<name>/runs")
def create_run(name: str):
    definition = get_definition(name)  # UnknownTask -> 404 page
    submitted = form_values(definition, request.form)
    key = request.form.get(KEY_FIELD) or None
    try:
        idempotency_key(key, KEY_FIELD)
        run, created = runs.start_run(
            definition.name,
            submitted,
            source="web",
            requester=current_requester(),
            idempotency_key=key,
            from_text=True,
        )
    except ValidationError as exc:
        form = task_form(definition, submitted, exc.fields, key=key)
        return _render_index({definition.name: form}, status=422)
    return _accepted_page(run, resubmitted=not created)


@bp.get("/runs")
def list_runs():
    try:
        query = parse_query(request.args, _PAGE_QUERY)
        filters = run_filter(query)
        cursor = query["cursor"]
        items, next_cursor = runs.list_runs(filters, limit=PAGE_SIZE, cursor=cursor)
    except ValidationError as exc:
        return render_template(
            "runs.html",
            runs=[],
            filters={k: request.args.get(k, "") for k in runs.RunFilter.FIELDS},
            options=_filter_options(),
            errors=exc.fields,
            next_url=None,
            first_url=url_for(".list_runs"),
            paged=False,
        ), 400
    query = filters.query_args()
    next_url = (
        url_for(".list_runs", cursor=next_cursor, **query) if next_cursor else None
    )
    return render_template(
        "runs.html",
        runs=items,
        filters={k: v or "" for k, v in vars(filters).items()},
        options=_filter_options(),
        errors={},
        next_url=next_url,
        first_url=url_for(".list_runs", **query),
        paged=cursor is not None,
    )


@bp.get("/vendor/plotly.min.js")
def plotly_js():
    """plotly.js from the installed plotly package, for result charts: served by
    the app (no CDN), cached for a day."""
    return send_from_directory(PLOTLY_JS.parent, PLOTLY_JS.name, max_age=86400)


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    return _run_page(run_or_404(run_id))


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    run = run_or_404(run_id)
    try:
        runs.cancel_run(run, current_requester())
    except runs.RunFinished:
        # Not an error to the person who clicked: the run simply ended first.
        return _run_page(run, notice="The run had already ended."), 409
    return redirect(url_for(".get_run", run_id=run.id), code=303)


@bp.post("/runs/<run_id>/rerun")
def rerun(run_id: str):
    """The run page's Run again: a new run of the same task with the same
    parameters. The form's one-time key makes a resubmitted form return the run it
    started."""
    run = run_or_404(run_id)
    try:
        key = idempotency_key(request.form.get(KEY_FIELD) or None, KEY_FIELD)
    except ValidationError:
        abort(400, description=f"{KEY_FIELD} is too long.")
    try:
        new_run, created = runs.rerun(
            run, source="web", requester=current_requester(), idempotency_key=key
        )
    except ValidationError as exc:
        # Parameters that today's bounds refuse (MAX_ROWS_PER_RUN lowered since).
        notice = "Not started: " + "; ".join(f"{k} {v}" for k, v in exc.fields.items())
        return _run_page(run, notice=notice), 422
    return _accepted_page(new_run, resubmitted=not created, repeats=run)


# -- helpers -------------------------------------------------------------------


def _render_index(forms: dict[str, TaskForm], status: int = 200):
    """The home page: a form for each task the user may start; `forms` replaces the
    fresh form of a task (after an error)."""
    requester = current_requester()
    definitions = list(task_registry().values())
    allowed = [d for d in definitions if runs.may_start(requester, d)]
    all_forms = [forms.get(d.name) or task_form(d) for d in allowed]
    hidden = [d for d in definitions if d not in allowed]
    recent, _ = runs.list_runs(runs.RunFilter(), limit=RECENT_RUNS)
    page = render_template("index.html", forms=all_forms, hidden=hidden, recent=recent)
    return page, status


def _run_page(
    run: Run,
    *,
    resubmitted: bool = False,
    notice: str | None = None,
    repeats: Run | None = None,
):
    """One run, with the buttons its viewer may use; `repeats` is the run that
    "Run again" repeated (the row does not keep it: said on the answer only)."""
    requester = current_requester()
    return render_template(
        "run.html",
        run=run,
        view=result_view(run.result),
        log=runs.read_lines(run),
        params=_params_used(run),
        resubmitted=resubmitted,
        notice=notice,
        repeats=repeats,
        page_url=url_for(".get_run", run_id=run.id),
        key=new_key(),
        may_cancel=runs.may_cancel(requester, run),
        may_rerun=run.task in task_registry()
        and runs.may_start(requester, get_definition(run.task)),
    )


def _accepted_page(run: Run, *, resubmitted: bool, repeats: Run | None = None):
    """202 + Location, and the new run's live page (its address put in the bar by
    page.js, so reload and a copied link show the run, not the form's POST)."""
    location = url_for(".get_run", run_id=run.id)
    page = _run_page(run, resubmitted=resubmitted, repeats=repeats)
    return page, 202, {"Location": location}


@dataclass
class ParamUsed:
    name: str
    value: Any
    default: bool  # not in the row: the declaration's default was used
    text: str = ""  # as a person types it: true, a,b, 2026-01-31


def _params_used(run: Run) -> list[ParamUsed]:
    """The parameters a run ran with: those recorded, and the defaults of those it
    was sent without (beat and other clients send `{}`)."""
    given = dict(run.params or {})
    if run.task not in task_registry():
        return [ParamUsed(k, v, False, json.dumps(v)) for k, v in given.items()]
    used = []
    for param in get_definition(run.task).fields:
        if param.name in given:
            value = given.pop(param.name)
            used.append(ParamUsed(param.name, value, False, param.text(value)))
        elif not param.required:
            default = param.default
            used.append(ParamUsed(param.name, default, True, param.text(default)))
    return used + [ParamUsed(k, v, False, json.dumps(v)) for k, v in given.items()]


def _filter_options() -> dict[str, tuple[str, ...]]:
    return {"task": tuple(task_registry()), "state": STATES, "source": SOURCES}


def views_init_app(app: Flask) -> None:
    """Register the pages (CSRF protection and sign-in are `myapp.web.auth`'s)."""
    app.register_blueprint(bp)
