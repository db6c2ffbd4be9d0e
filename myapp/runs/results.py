"""A run's result as JSON holds it, converted the way Plotly's JSON encoder converts
(numpy numbers and arrays, dates, `Decimal`, pandas objects, Plotly figures), so a
task may return what its libraries hand it. The result is stored in the run row and
in Celery's result backend, both JSON."""

from __future__ import annotations

import json
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
