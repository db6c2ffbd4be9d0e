"""A run's result as JSON holds it, converted the way Plotly's JSON encoder converts
(numpy numbers and arrays, dates, `Decimal`, pandas objects, Plotly figures), so a
task may return what its libraries hand it. The result is stored in the run row and
in Celery's result backend, both JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from plotly.io.json import to_json_plotly


class ResultNotSerializable(Exception):
    """The task returned something JSON cannot hold, even converted."""


def jsonable(result: Any) -> Any:
    """`result` as plain JSON values, or ResultNotSerializable saying why."""
    try:
        # Most results are plain already: one dumps, no copy.
        json.dumps(result, allow_nan=False)
        return result
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.loads(to_json_plotly(result))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(
            f"the task returned a value JSON cannot hold: {_short(exc)}"
        ) from None


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]


# Rows a page draws of a result's table; the whole result stays in the run JSON.
TABLE_ROWS_SHOWN = 500


@dataclass(frozen=True)
class ResultView:
    """How a finished run's result is shown (HTML run page and Dash task page): a
    `table` (a list of row objects) as a grid, a `figure` (a Plotly figure) as a
    chart, and whatever else the result holds as formatted JSON."""

    table: list[dict[str, Any]] | None = None
    columns: tuple[str, ...] = ()
    figure: dict[str, Any] | None = None
    rest: Any = None

    @property
    def rows_hidden(self) -> int:
        return max(0, len(self.table or ()) - TABLE_ROWS_SHOWN)


def result_view(result: Any) -> ResultView:
    """Split a stored result into what each part is drawn as."""
    if not isinstance(result, dict):
        return ResultView(rest=result)
    table = result.get("table")
    figure = result.get("figure")
    is_table = isinstance(table, list) and all(isinstance(r, dict) for r in table)
    is_figure = isinstance(figure, dict) and (
        isinstance(figure.get("data"), list) or isinstance(figure.get("layout"), dict)
    )
    if not (is_table or is_figure):
        return ResultView(rest=result)
    drawn = {"table"} if is_table else set()
    drawn |= {"figure"} if is_figure else set()
    rest = {k: v for k, v in result.items() if k not in drawn} or None
    columns = tuple(dict.fromkeys(k for row in table for k in row)) if is_table else ()
    return ResultView(
        table=table if is_table else None,
        columns=columns,
        figure=figure if is_figure else None,
        rest=rest,
    )
