"""A team's task module, outside `myapp`, written as the contract's "Adding a task"
shows: the tests name it in TASK_MODULES and start its tasks from every surface.

`every_kind` takes one parameter of each kind and answers with what reached the
function, as Python types, so a test can tell `False` from `"false"` and a `date`
from its text. The others return what JSON cannot hold natively, nothing JSON can
hold at all, outlive their own time limit, go to a queue of their own, or work
quietly after one progress report.
"""

from __future__ import annotations

import contextlib
import enum
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import numpy as np
import plotly.graph_objects as go
from pydantic import Field

from myapp.tasks import RunContext, task


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@task(role="operator")
def every_kind(
    ctx: RunContext,
    title: Annotated[
        str, Field(min_length=2, max_length=20, description="What to call it.")
    ],
    loud: bool = True,
    count: Annotated[int, Field(ge=1, le=10, description="How many.")] = 3,
    ratio: float = 0.5,
    size: Literal["small", "large"] = "small",
    level: Literal[1, 2, 3] = 1,
    mood: Literal["calm", "busy"] | None = "calm",
    colour: Colour = Colour.GREEN,
    on: date = date(2026, 1, 1),
    at: datetime = datetime(2026, 1, 1, 12, 30),
    tags: list[str] = [],  # noqa: B006 - pydantic copies defaults
    days: list[Literal["mon", "tue", "wed"]] = ["mon"],  # noqa: B006
    note: str | None = None,
) -> dict[str, Any]:
    """Echo every parameter with the Python type that reached the function."""
    ctx.progress(1, 1, "echoed")
    return {
        "title": title,
        "loud": loud,
        "loud_type": type(loud).__name__,
        "count_type": type(count).__name__,
        "count": count,
        "ratio_type": type(ratio).__name__,
        "ratio": ratio,
        "size": size,
        "level": level,
        "level_type": type(level).__name__,
        "mood": mood,
        "colour": colour.name,
        "colour_type": type(colour).__name__,
        "on_type": type(on).__name__,
        "on_weekday": on.isoweekday(),
        "at_type": type(at).__name__,
        "at_hour": at.hour,
        "tags": tags,
        "tags_type": type(tags).__name__,
        "days": days,
        "note": note,
        "note_type": type(note).__name__,
    }


@task(role="operator")
def rich_result(ctx: RunContext) -> dict[str, Any]:
    """Return numpy values, a Plotly figure object, a Decimal and a date."""
    figure = go.Figure(go.Bar(x=["a", "b"], y=np.array([1, 2])))
    return {
        "count": np.int64(3),
        "mean": np.float64(1.5),
        "values": np.arange(3),
        "price": Decimal("2.50"),
        "day": date(2026, 1, 31),
        "figure": figure,
    }


@task(role="operator")
def opaque_result(ctx: RunContext) -> Any:
    """Return something JSON cannot hold, even converted."""
    return {"things": {object(), object()}}


@task(role="operator", time_limit=2)
def slow(ctx: RunContext, seconds: float = 30) -> dict[str, float]:
    """Sleep longer than its own time limit allows."""
    time.sleep(seconds)
    return {"slept": seconds}


@task(role="operator", time_limit=2)
def stubborn(ctx: RunContext, seconds: float = 8) -> str:
    """Swallow the soft time limit (a broad `except`): only the hard limit stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # The point: it swallows the soft limit with everything else.
        with contextlib.suppress(Exception):
            time.sleep(0.1)
    return "never"


@task(role="operator", queue="reports")
def report_queue(ctx: RunContext) -> str:
    """Run on the `reports` queue only."""
    return "reported"


@task(role="operator")
def quiet(ctx: RunContext, seconds: float = 3) -> dict[str, float]:
    """Work without a word between the first progress report and the result."""
    ctx.progress(0, 1, "thinking")
    time.sleep(seconds)
    return {"slept": seconds}
