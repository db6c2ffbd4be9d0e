"""HTML pages: the task forms, the run history and one run's live page.

Thin views over `myapp.runs`: the forms start runs through admission and validate
through the task definitions
(strings accepted for numbers), so a bad value gets the same message as in the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from myapp import runs
from myapp.extensions import csrf
from myapp.models import SOURCES, STATES, Run
from myapp.tasks import (
    DEFINITIONS,
    TASK_NAMES,
    Param,
    TaskDefinition,
    ValidationError,
    get_definition,
)
from myapp.web.params import MAX_IDEMPOTENCY_KEY_LENGTH, RUNS_QUERY, parse_query
from myapp.web.security import current_requester

bp = Blueprint("views", __name__)

# Dash registers its routes on the app itself (no blueprint), after this module
# runs; its JSON callbacks carry no form token, so they are exempt by path.
DASH_PATH = "/dash/"
# Hidden form fields that are not task parameters.
KEY_FIELD = "idempotency_key"
FORM_FIELDS = (KEY_FIELD, "csrf_token")
RECENT_RUNS = 10
PAGE_SIZE = 25
# The history page takes the API's filters and cursor; its page size is fixed.
_PAGE_QUERY = tuple(p for p in RUNS_QUERY if p.name != "limit")


@dataclass
class FormField:
    """One input of a task form, as the template draws it."""

    name: str
    description: str
    kind: str  # "number", "select" or "text"
    default: Any
    value: str
    step: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    error: str | None = None


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
    submitted: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    key: str | None = None,
) -> TaskForm:
    """The form of a task, prefilled with defaults or with what was submitted."""
    submitted = submitted or {}
    errors = dict(errors or {})
    fields = [
        _form_field(param, submitted.get(param.name), errors.get(param.name))
        for param in definition.params
    ]
    return TaskForm(definition, fields, key or new_key(), errors)


def _form_field(param: Param, submitted: str | None, error: str | None) -> FormField:
    low, high = param.bounds()
    default = param.default
    value = submitted if submitted is not None else _text(default)
    if param.choices is not None:
        return FormField(
            param.name,
            param.description,
            "select",
            default,
            value,
            choices=param.choices,
            required=param.required,
            error=error,
        )
    if param.type in ("integer", "number"):
        return FormField(
            param.name,
            param.description,
            "number",
            default,
            value,
            step="1" if param.type == "integer" else "any",
            minimum=low,
            maximum=high,
            required=param.required,
            error=error,
        )
    return FormField(
        param.name,
        param.description,
        "text",
        default,
        value,
        required=param.required,
        error=error,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    submitted = {k: v for k, v in request.form.items() if k not in FORM_FIELDS}
    key = request.form.get(KEY_FIELD) or None
    try:
        if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            raise ValidationError(
                {KEY_FIELD: f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"}
            )
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
    page = render_template("run.html", run=run, resubmitted=not created)
    location = url_for(".get_run", run_id=run.id)
    return page, 202, {"Location": location}


@bp.get("/runs")
def list_runs():
    try:
        query = parse_query(request.args, _PAGE_QUERY)
        filters = runs.RunFilter(query["task"], query["state"], query["source"])
        cursor = query["cursor"]
        items, next_cursor = runs.list_runs(filters, limit=PAGE_SIZE, cursor=cursor)
    except ValidationError as exc:
        return render_template(
            "runs.html",
            runs=[],
            filters={k: request.args.get(k, "") for k in ("task", "state", "source")},
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


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    return render_template("run.html", run=_run_or_404(run_id), resubmitted=False)


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    run = _run_or_404(run_id)
    try:
        runs.cancel_run(run)
    except runs.RunFinished:
        # Not an error to the person who clicked: the run simply ended first.
        page = render_template(
            "run.html", run=run, resubmitted=False, notice="The run had already ended."
        )
        return page, 409
    return redirect(url_for(".get_run", run_id=run.id), code=303)


# -- helpers -------------------------------------------------------------------


def _render_index(forms: dict[str, TaskForm], status: int = 200):
    """The home page; `forms` replaces the fresh form of a task (after an error)."""
    all_forms = [forms.get(d.name) or task_form(d) for d in DEFINITIONS]
    recent, _ = runs.list_runs(runs.RunFilter(), limit=RECENT_RUNS)
    return render_template("index.html", forms=all_forms, recent=recent), status


def _filter_options() -> dict[str, tuple[str, ...]]:
    return {"task": TASK_NAMES, "state": STATES, "source": SOURCES}


def _run_or_404(run_id: str) -> Run:
    run = runs.get_run(run_id)
    if run is None:
        abort(404, description=f"No run has id {run_id!r}.")
    return run


def _protect_forms() -> None:
    """CSRF for every form POST, except the JSON API (exempted) and Dash's routes."""
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    if request.path.startswith(DASH_PATH):
        return
    csrf.protect(apply_exemptions=True)


def views_init_app(app: Flask) -> None:
    """Register the pages and CSRF protection for their forms."""
    from myapp.web import api

    csrf.init_app(app)
    # The JSON API takes no cookie-based authentication, so a forged cross-site
    # request gains nothing a direct one would not: it is exempt (see README).
    csrf.exempt(api.bp)
    # Flask-WTF's own hook cannot exempt Dash by path; ours does the same check.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(_protect_forms)
    app.register_blueprint(bp)
