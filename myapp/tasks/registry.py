"""The tasks of one app: the built-in module plus `TASK_MODULES`, found by their
`@task` declarations when the app is built.

Every surface and the worker read the registry in `app.extensions["tasks"]`; none
keeps a list of its own. A module that does not import, a task that cannot be
described or two tasks with one name raise TaskDeclarationError, so web, worker and
beat stop at start with a message naming them, never later inside a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, current_app

from myapp.tasks.declaration import Declaration, declaration_of
from myapp.tasks.definition import TaskDeclarationError, TaskDefinition, UnknownTask

BUILTIN_MODULES = ("myapp.tasks.builtin",)


class TaskRegistry(Mapping[str, TaskDefinition]):
    """Task name -> definition, in declaration order (built-in tasks first)."""

    def __init__(self, definitions: list[TaskDefinition]):
        self._by_name = {d.name: d for d in definitions}

    def __getitem__(self, name: str) -> TaskDefinition:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def definition(self, name: str) -> TaskDefinition:
        """The task called `name`, or UnknownTask."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownTask(name) from None

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues tasks declared for themselves, each once."""
        return tuple(dict.fromkeys(d.queue for d in self.values() if d.queue))


def module_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The built-in module, then TASK_MODULES (comma-separated) in order."""
    extra = (config.get("TASK_MODULES") or "").split(",")
    named = tuple(name.strip() for name in extra if name.strip())
    return tuple(dict.fromkeys(BUILTIN_MODULES + named))


def declarations_in(module_name: str) -> list[Declaration]:
    """The `@task` functions a module defines (not those it merely imports)."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TaskDeclarationError(
            f"TASK_MODULES: module {module_name!r} cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    found = [
        declaration
        for value in vars(module).values()
        if (declaration := declaration_of(value)) is not None
        and declaration.func.__module__ == module.__name__
    ]
    if not found:
        raise TaskDeclarationError(
            f"TASK_MODULES: module {module_name!r} declares no @task function"
        )
    return found


def build_registry(config: Mapping[str, Any]) -> TaskRegistry:
    """Import every task module and bind each declaration to `config`."""
    definitions: dict[str, TaskDefinition] = {}
    origin: dict[str, str] = {}
    for module_name in module_names(config):
        for declaration in declarations_in(module_name):
            if declaration.name in definitions:
                raise TaskDeclarationError(
                    f"two tasks are named {declaration.name!r}: "
                    f"{origin[declaration.name]} and {declaration.where}"
                )
            definitions[declaration.name] = TaskDefinition.build(declaration, config)
            origin[declaration.name] = declaration.where
    return TaskRegistry(list(definitions.values()))


def tasks_init_app(app: Flask) -> TaskRegistry:
    registry = build_registry(app.config)
    app.extensions["tasks"] = registry
    return registry


def task_registry() -> TaskRegistry:
    """The current app's tasks."""
    return current_app.extensions["tasks"]


def get_definition(name: str) -> TaskDefinition:
    """The current app's task called `name`, or UnknownTask."""
    return task_registry().definition(name)
