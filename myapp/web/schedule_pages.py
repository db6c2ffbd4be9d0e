"""HTML pages of schedules: the list (next fire times, when in words, enable or
disable, run now, delete) and the form at /schedules/new and /schedules/<id>.

Thin views over myapp.schedules: the form's text goes through the same checks as
the API (parameters by the task's declaration, cron, time zone), and each message
is shown beside its field. Pages offer only what the signed-in user may do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from myapp import runs, schedules
from myapp.edge import current_requester
from myapp.models import Schedule, utcnow
from myapp.tasks import TaskDefinition, ValidationError, task_registry
from myapp.web.inputs import schedule_or_404
from myapp.web.views import TaskForm, form_values, task_form

bp = Blueprint("schedules", __name__)

# The schedule's own inputs are prefixed, so no task parameter can share a name.
PREFIX = "schedule."
KINDS = ("every", "cron")


@dataclass
class ScheduleForm:
    """What the form shows: the schedule's fields as text, the task's parameter
    inputs, and a message per field."""

    values: dict[str, Any]
    params: TaskForm | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def other_errors(self) -> dict[str, str]:
        shown = {"name", "task", "every_s", "cron", "timezone", "enabled"}
        shown |= {"description", "params"}
        if self.params is not None:
            shown |= {f"params.{f.name}" for f in self.params.fields}
        return {k: v for k, v in self.errors.items() if k not in shown}


@bp.get("/schedules")
def list_schedules():
    requester = current_requester()
    rows = [
        _row(schedule, requester, utcnow()) for schedule in schedules.list_schedules()
    ]
    may_create = any(schedules.may_manage(requester, t) for t in task_registry())
    return render_template("schedules.html", rows=rows, may_create=may_create)


@bp.get("/schedules/new")
def new_schedule():
    definition = _chosen_task(request.args.get("task"))
    values = {"kind": "every", "every_s": "", "cron": "", "timezone": "UTC"}
    values |= {"enabled": True, "name": "", "description": ""}
    return _form_page(None, definition, ScheduleForm(values, _params_form(definition)))


@bp.post("/schedules/new")
def create_schedule():
    name = request.form.get(PREFIX + "task") or ""
    definition = task_registry().get(name)
    if definition is None:
        abort(400, description="Choose one of the tasks first.")
    schedules.check_manage(current_requester(), name)  # NotAllowed: 403
    raw, shown = _submitted(definition, request.form, new=True)
    try:
        schedule = schedules.create_schedule(raw, current_requester(), from_text=True)
    except schedules.ScheduleNameTaken as exc:
        return _invalid(None, definition, shown, {"name": str(exc)}, 409)
    except ValidationError as exc:
        return _invalid(None, definition, shown, exc.fields, 422)
    return redirect(url_for(".list_schedules", _anchor=f"schedule-{schedule.id}"), 303)


@bp.get("/schedules/<int:schedule_id>")
def edit_schedule(schedule_id: int):
    schedule = schedule_or_404(schedule_id)
    definition = task_registry().get(schedule.task)
    values = {
        "kind": "cron" if schedule.cron else "every",
        "every_s": str(schedule.every_s or ""),
        "cron": schedule.cron or "",
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "name": schedule.name,
        "description": schedule.description,
    }
    params = None
    if definition is not None:
        given = {k: _as_text(v) for k, v in schedule.params.items()}
        params = task_form(definition, given or None)
    return _form_page(schedule, definition, ScheduleForm(values, params))


@bp.post("/schedules/<int:schedule_id>")
def update_schedule(schedule_id: int):
    schedule = schedule_or_404(schedule_id)
    definition = task_registry().get(schedule.task)
    if definition is None:
        abort(409, description=f"Its task {schedule.task!r} no longer exists.")
    raw, shown = _submitted(definition, request.form, new=False)
    try:
        schedules.update_schedule(schedule, raw, current_requester(), from_text=True)
    except ValidationError as exc:
        return _invalid(schedule, definition, shown, exc.fields, 422)
    return redirect(url_for(".list_schedules", _anchor=f"schedule-{schedule.id}"), 303)


@bp.post("/schedules/<int:schedule_id>/enable")
def enable_schedule(schedule_id: int):
    return _toggle(schedule_id, True)


@bp.post("/schedules/<int:schedule_id>/disable")
def disable_schedule(schedule_id: int):
    return _toggle(schedule_id, False)


@bp.post("/schedules/<int:schedule_id>/run")
def run_schedule(schedule_id: int):
    """Run now: a start by the signed-in user; the browser lands on the run."""
    run = schedules.run_now(
        schedule_or_404(schedule_id), current_requester(), source="web"
    )
    return redirect(url_for("views.get_run", run_id=run.id), 303)


@bp.post("/schedules/<int:schedule_id>/delete")
def delete_schedule(schedule_id: int):
    schedules.delete_schedule(schedule_or_404(schedule_id), current_requester())
    return redirect(url_for(".list_schedules"), 303)


# -- helpers -------------------------------------------------------------------


def _toggle(schedule_id: int, enabled: bool):
    schedule = schedule_or_404(schedule_id)
    schedules.set_enabled(schedule, enabled, current_requester())
    return redirect(url_for(".list_schedules", _anchor=f"schedule-{schedule.id}"), 303)


def _row(schedule: Schedule, requester: runs.Requester, now: datetime) -> dict:
    data = schedules.schedule_json(schedule, now=now)
    definition = task_registry().get(schedule.task)
    return {
        **data,
        "next_runs": [_when(t) for t in data["next_runs"]],
        "may_manage": schedules.may_manage(requester, schedule.task),
        "may_run": definition is not None and runs.may_start(requester, definition),
        "stored_enabled": schedule.enabled,
    }


def _when(iso: str) -> str:
    """An ISO time as people read it: "2026-12-02 07:30 UTC" (seconds only when
    a fire has them)."""
    day, _, time = iso.removesuffix("Z").partition("T")
    time = time.removesuffix(".000").removesuffix(":00")
    return f"{day} {time} UTC"


def _chosen_task(name: str | None) -> TaskDefinition | None:
    """The task the form is for: one the user may schedule, else None."""
    if not name:
        return None
    definition = task_registry().get(name)
    if definition is None or not schedules.may_manage(current_requester(), name):
        return None
    return definition


def _params_form(definition: TaskDefinition | None) -> TaskForm | None:
    return task_form(definition) if definition is not None else None


def _submitted(
    definition: TaskDefinition, form: MultiDict, *, new: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what goes to the service, what the form shows again)."""
    own = {k[len(PREFIX) :]: form.getlist(k)[-1] for k in form if k.startswith(PREFIX)}
    params_only = MultiDict(
        [(k, v) for k, v in form.items(multi=True) if not k.startswith(PREFIX)]
    )
    params = form_values(definition, params_only)
    kind = own.get("kind") if own.get("kind") in KINDS else "every"
    raw: dict[str, Any] = {
        "params": params,
        "timezone": own.get("timezone", ""),
        "enabled": own.get("enabled", "false"),
        "description": own.get("description", ""),
    }
    # Only the chosen kind is sent: it replaces the other one.
    if kind == "every":
        raw["every_s"] = own.get("every_s", "")
    else:
        raw["cron"] = own.get("cron", "")
    if new:
        raw |= {"name": own.get("name", ""), "task": definition.name}
    shown = {
        "kind": kind,
        "every_s": own.get("every_s", ""),
        "cron": own.get("cron", ""),
        "timezone": own.get("timezone", ""),
        "enabled": own.get("enabled", "false") == "true",
        "name": own.get("name", ""),
        "description": own.get("description", ""),
        "params": params,
    }
    return raw, shown


def _invalid(
    schedule: Schedule | None,
    definition: TaskDefinition,
    shown: dict[str, Any],
    errors: dict[str, str],
    status: int,
):
    param_errors = {
        k[len("params.") :]: v for k, v in errors.items() if k.startswith("params.")
    }
    params = task_form(definition, shown.pop("params"), param_errors)
    page = _form_page(schedule, definition, ScheduleForm(shown, params, errors))
    return page, status


def _form_page(
    schedule: Schedule | None, definition: TaskDefinition | None, form: ScheduleForm
) -> str:
    """The form page; only the tasks the user may schedule are offered."""
    requester = current_requester()
    choices = [
        d for d in task_registry().values() if schedules.may_manage(requester, d.name)
    ]
    if schedule is not None:
        may_manage = schedules.may_manage(requester, schedule.task)
    elif definition is not None:
        may_manage = schedules.may_manage(requester, definition.name)
    else:
        may_manage = bool(choices)
    return render_template(
        "schedule.html",
        schedule=schedule,
        definition=definition,
        form=form,
        choices=choices,
        may_manage=may_manage,
        paused_reason=schedules.paused_reason(schedule) if schedule else None,
        prefix=PREFIX,
    )


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(v) for v in value]
    return "" if value is None else str(value)
