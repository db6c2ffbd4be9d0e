"""Tasks: what can run. Definitions (`Param`, `TaskDefinition`, `RunContext`), the
built-in tasks, and the lookup by name that every edge and the worker use."""

from __future__ import annotations

from myapp.tasks.builtin import DEFINITIONS
from myapp.tasks.definition import (
    Param,
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDefinition,
    UnknownTask,
    ValidationError,
)

_BY_NAME = {d.name: d for d in DEFINITIONS}
TASK_NAMES: tuple[str, ...] = tuple(_BY_NAME)


def get_definition(name: str) -> TaskDefinition:
    """The task called `name`, or UnknownTask."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownTask(name) from None


__all__ = [
    "DEFINITIONS",
    "TASK_NAMES",
    "Param",
    "ProgressHook",
    "RunCancelled",
    "RunContext",
    "TaskDefinition",
    "UnknownTask",
    "ValidationError",
    "get_definition",
]
