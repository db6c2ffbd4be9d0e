"""The schedules' JSON API (`/api/schedules…`): thin views over myapp.schedules,
on the API's blueprint (its gate, errors and body rules)."""

from __future__ import annotations

from flask import jsonify

from myapp import schedules
from myapp.edge import current_requester
from myapp.web.api import _accepted, _json_object, bp
from myapp.web.inputs import schedule_or_404


@bp.get("/schedules")
def list_schedules():
    items = [schedules.schedule_json(s) for s in schedules.list_schedules()]
    return jsonify({"items": items})


@bp.post("/schedules")
def create_schedule():
    schedule = schedules.create_schedule(_json_object(), current_requester())
    response = jsonify(schedules.schedule_json(schedule))
    response.status_code = 201
    response.headers["Location"] = f"/api/schedules/{schedule.id}"
    return response


@bp.get("/schedules/<int:schedule_id>")
def get_schedule(schedule_id: int):
    return jsonify(schedules.schedule_json(schedule_or_404(schedule_id)))


@bp.patch("/schedules/<int:schedule_id>")
def update_schedule(schedule_id: int):
    schedule = schedules.update_schedule(
        schedule_or_404(schedule_id), _json_object(), current_requester()
    )
    return jsonify(schedules.schedule_json(schedule))


@bp.delete("/schedules/<int:schedule_id>")
def delete_schedule(schedule_id: int):
    schedules.delete_schedule(schedule_or_404(schedule_id), current_requester())
    return "", 204


@bp.post("/schedules/<int:schedule_id>/run")
def run_schedule(schedule_id: int):
    run = schedules.run_now(
        schedule_or_404(schedule_id), current_requester(), source="api"
    )
    return _accepted(run)
