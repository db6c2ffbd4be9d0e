"""Reading what a callback was sent, and shaping what it answers.

Every callback can be sent any JSON for any of its inputs (the endpoint is public):
each value is checked for its type before use, and a value of the wrong type
counts as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dash import Output, no_update

_RUN_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def run_id(value: Any) -> str | None:
    """A run id as this app issues them, or None for anything else."""
    if isinstance(value, str) and _RUN_ID.fullmatch(value):
        return value
    return None


def ref_run_id(ref: Any) -> str | None:
    """The run id in a store's `{"id": …}`, or None for anything else."""
    return run_id(ref.get("id")) if isinstance(ref, dict) else None


def clicks(n_clicks: Any) -> int | None:
    return n_clicks if type(n_clicks) is int else None


def dup(component: str, prop: str) -> Output:
    return Output(component, prop, allow_duplicate=True)


def only(outputs: Mapping[str, Output], **changed: Any) -> dict[str, Any]:
    """The value of a dict-output callback that changes only the outputs named."""
    unknown = changed.keys() - outputs.keys()
    if unknown:
        raise KeyError(f"not outputs of this callback: {sorted(unknown)}")
    return {name: changed.get(name, no_update) for name in outputs}
