"""The built-in tasks, declared exactly as a team declares its own (`@task` on a
typed function; see the contract's "Adding a task").

Task functions are plain: they take a RunContext and validated parameters and
know nothing of Celery, Flask requests or Dash.
"""

from __future__ import annotations

import math
import random
import time
from datetime import timedelta
from typing import Annotated, Any, Literal

import plotly.graph_objects as go
from pydantic import Field
from sqlalchemy import delete, select

from myapp.extensions import db, get_store
from myapp.models import FINISHED_STATES, Run, RunLogBatch, utcnow
from myapp.store import CATEGORIES, Category
from myapp.tasks.declaration import FromSetting, task
from myapp.tasks.definition import RunContext

# Sleep at most this long between progress reports, so a long pause still
# heartbeats and notices a cancel.
_MAX_STEP_SECONDS = 0.5


@task(role="operator")
def generate_data(
    ctx: RunContext,
    rows: Annotated[
        int,
        Field(ge=1, description="How many rows to append."),
        FromSetting(le="MAX_ROWS_PER_RUN"),
    ] = 10,
    seconds: Annotated[
        float,
        Field(ge=0, le=600, description="Spread the work over this many seconds."),
    ] = 5,
) -> dict[str, Any]:
    """Append random rows to the data set, paced over some seconds.

    Rows become visible in one atomic, idempotent step at the end, so a run that is
    cancelled, fails or is delivered twice leaves exactly zero or `rows` rows. A big
    run is staged in chunks first; each chunk reports progress, which is also where
    a cancel stops it.
    """
    steps = max(1, min(rows, 100), math.ceil(seconds / _MAX_STEP_SECONDS))
    pause = seconds / steps
    rng = random.Random()
    made: list[tuple[float, str]] = []
    ctx.progress(0, rows, f"0 of {rows} rows")
    for step in range(1, steps + 1):
        target = rows * step // steps
        made.extend(get_store().random_rows(target - len(made), rng))
        if pause:
            time.sleep(pause)
        ctx.progress(len(made), rows, f"{len(made)} of {rows} rows")
    commit = get_store().commit_run(
        ctx.run_id,
        made,
        on_staged=lambda staged, total: ctx.progress(
            rows, rows, f"saving: {staged} of {total} rows staged"
        ),
        attempt=ctx.attempt,
    )
    if commit.cancelled:
        ctx.cancelled()
    ctx.progress(rows, rows, f"{rows} of {rows} rows")
    return {
        "rows": commit.count,
        "first_id": commit.first_id,
        "total": get_store().total(),
    }


@task(role="operator")
def summarize_data(
    ctx: RunContext,
    category: Annotated[
        Category | None, Field(description="Only this category (all when empty).")
    ] = None,
) -> dict[str, Any]:
    """Count, mean, min, max and per-category counts of the data set."""
    ctx.progress(0, 1, "reading aggregates")
    summary = get_store().summary(category)
    ctx.progress(1, 1, f"summarised {summary['count']} rows")
    return summary


# It deletes history: only admins. On the maintenance queue, beside the other
# housekeeping, so it never waits behind long user runs.
@task(role="admin", queue="maintenance")
def prune_runs(
    ctx: RunContext,
    older_than_days: Annotated[
        int, Field(ge=1, le=36500, description="Age in days of the runs to delete.")
    ] = 30,
) -> dict[str, Any]:
    """Delete finished runs older than some days from the run history."""
    ctx.progress(0, 1, f"deleting finished runs older than {older_than_days} days")
    cutoff = utcnow() - timedelta(days=older_than_days)
    old = (Run.state.in_(FINISHED_STATES), Run.finished_at < cutoff)
    # Their log lines first (the foreign key cascades too, but SQLite does not
    # enforce foreign keys unless asked).
    db.session.execute(
        delete(RunLogBatch)
        .where(RunLogBatch.run_id.in_(select(Run.id).where(*old)))
        .execution_options(synchronize_session=False)
    )
    result = db.session.execute(
        delete(Run).where(*old).execution_options(synchronize_session=False)
    )
    db.session.commit()
    ctx.progress(1, 1, f"deleted {result.rowcount} runs")
    return {"deleted": result.rowcount}


@task(role="operator")
def build_report(
    ctx: RunContext,
    period: Annotated[
        Literal["hour", "day"], Field(description="Group the rows by hour or by day.")
    ] = "hour",
    categories: Annotated[
        list[Category], Field(description="Only these categories (all when empty).")
    ] = [],  # noqa: B006 -- pydantic copies defaults; the schema shows []
    include_chart: Annotated[
        bool, Field(description="Add a chart of the rows per period.")
    ] = True,
) -> dict[str, Any]:
    """The data set summarised per hour or day and category: a table, and a chart."""
    wanted = set(categories) or set(CATEGORIES)
    ctx.progress(0, 1, "reading the runs' totals")
    width = 13 if period == "hour" else 10  # "2026-12-02T06" or "2026-12-02"
    buckets: dict[tuple[str, str], list[float]] = {}
    for created, per_category in get_store().run_totals():
        for category, (rows, total) in per_category.items():
            if category in wanted:
                bucket = buckets.setdefault((created[:width], category), [0, 0.0])
                bucket[0] += rows
                bucket[1] += total
    table = [
        {
            "period": _period_label(start, period),
            "category": category,
            "rows": int(rows),
            "mean_value": round(total / rows, 3) if rows else None,
        }
        for (start, category), (rows, total) in sorted(buckets.items())
    ]
    ctx.progress(1, 1, f"{len(table)} rows in the report")
    report: dict[str, Any] = {"period": period, "table": table}
    if include_chart:
        report["figure"] = _report_figure(table, period)
    return report


def _period_label(start: str, period: str) -> str:
    return f"{start[:10]} {start[11:13]}:00" if period == "hour" else start


def _report_figure(table: list[dict[str, Any]], period: str) -> go.Figure:
    figure = go.Figure()
    for category in CATEGORIES:
        mine = [row for row in table if row["category"] == category]
        if mine:
            figure.add_bar(
                name=category,
                x=[row["period"] for row in mine],
                y=[row["rows"] for row in mine],
            )
    figure.update_layout(
        barmode="stack",
        title=f"Rows added per {period}, by category",
        xaxis_title=period,
        yaxis_title="rows",
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return figure
