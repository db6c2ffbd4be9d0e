"""Tasks: what can run. `@task` declares one (`declaration`), the registry finds the
built-in ones and those of TASK_MODULES when an app is built (`registry`), and each
becomes a `TaskDefinition` that every edge and the worker read (`definition`)."""

from __future__ import annotations

from myapp.tasks.declaration import FromSetting, task
from myapp.tasks.definition import (
    KINDS,
    ParamField,
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDeclarationError,
    TaskDefinition,
    UnknownTask,
    ValidationError,
)
from myapp.tasks.registry import (
    TaskRegistry,
    get_definition,
    task_registry,
    tasks_init_app,
)

__all__ = [
    "KINDS",
    "FromSetting",
    "ParamField",
    "ProgressHook",
    "RunCancelled",
    "RunContext",
    "TaskDeclarationError",
    "TaskDefinition",
    "TaskRegistry",
    "UnknownTask",
    "ValidationError",
    "get_definition",
    "task",
    "task_registry",
    "tasks_init_app",
]
