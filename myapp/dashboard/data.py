"""The main page's data set: the grid's blocks, the change counter, and the line
about the schedule that feeds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from myapp import schedules
from myapp.dashboard.core import TASK
from myapp.extensions import db, get_store
from myapp.models import Run, isoformat, utcnow


def schedule_line() -> str:
    """When the schedules of generate_data fire (the rows users edit) and when the
    last scheduled run of it finished."""
    found = [s for s in schedules.list_schedules(TASK) if s.enabled]
    if found:
        line = "Scheduled: generate_data " + "; ".join(
            f"{schedules.timing_of(s).describe()} ({s.name})" for s in found
        )
        line += ". "
    else:
        line = "No schedule starts generate_data now (see the Schedules page). "
    last = db.session.scalar(
        select(Run)
        .where(Run.source == "beat", Run.task == TASK, Run.finished_at.is_not(None))
        .order_by(Run.finished_at.desc())
        .limit(1)
    )
    if last is None:
        return line + "No scheduled run has finished yet."
    ago = (utcnow() - last.finished_at).total_seconds()
    return (
        line + f"Last scheduled run finished {ago:.0f} s ago "
        f"({isoformat(last.finished_at)}, {last.state})."
    )


def grid_block(request: Any, max_block: int = 1000) -> dict:
    """One block for the infinite row model: `getRowsRequest` -> `getRowsResponse`.
    Anything in the request that is not what AG Grid sends counts as absent."""
    request = request if isinstance(request, Mapping) else {}
    start = _bounded_int(request.get("startRow"), 0, 10**9)
    end = _bounded_int(request.get("endRow"), start, start + max_block)
    sort, order = "created_at", "desc"
    sort_model = request.get("sortModel")
    for item in sort_model if isinstance(sort_model, list) else []:
        if not isinstance(item, Mapping):
            continue
        column, direction = item.get("colId"), item.get("sort")
        if column in ("value", "created_at", "id") and direction in ("asc", "desc"):
            # Ids are given in creation order, so sorting by id is sorting by time.
            sort = "value" if column == "value" else "created_at"
            order = direction
            break
    page = get_store().page(offset=start, limit=end - start, sort=sort, order=order)
    return {"rowData": page.rows, "rowCount": page.total}


def _bounded_int(value: Any, low: int, high: int) -> int:
    """A whole number clamped to [low, high]; `low` for anything else (text,
    fractions, Infinity and NaN included)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        return low
    return max(low, min(high, value))


def data_state() -> tuple[int, int]:
    """(version, total) of the data set: two cheap GETs, no rows."""
    store = get_store()
    return store.version(), store.total()
