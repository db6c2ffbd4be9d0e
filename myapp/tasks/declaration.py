"""`@task`: how anyone, our built-in tasks included, declares a task.

The decorator only records what was said (name, role, queue, time limit) on the
function and hands the function back unchanged, so a team can still call and test
it as plain Python. Nothing is checked against an app here: the registry
(`myapp.tasks.registry`) turns declarations into definitions when an app is built,
reading bounds that come from settings (`FromSetting`) in that app's config.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from myapp.users.roles import Role

F = TypeVar("F", bound=Callable[..., Any])

# Where the declaration is kept on the function.
ATTRIBUTE = "__myapp_task__"
# A task name is a URL path segment, a Celery task name and a CLI argument.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class Declaration:
    """What `@task(...)` said about a function."""

    func: Callable[..., Any]
    name: str
    role: Role
    queue: str | None
    time_limit: float | None

    @property
    def where(self) -> str:
        """`module.function`, for messages that must point at the code."""
        return f"{self.func.__module__}.{self.func.__qualname__}"


@dataclass(frozen=True)
class FromSetting:
    """A bound read from a setting when the app is built, for limits an operator
    sets: `Annotated[int, Field(ge=1), FromSetting(le="MAX_ROWS_PER_RUN")]`."""

    ge: str | None = None
    le: str | None = None


def task(
    func: F | None = None,
    *,
    role: str | Role = Role.OPERATOR,
    name: str | None = None,
    queue: str | None = None,
    time_limit: float | None = None,
) -> Any:
    """Declare `func(ctx, **params)` a task; its signature is its parameter schema.

    `role` is the lowest role that may start it; `name` (default: the function's
    name) is also its Celery task name; `queue` routes its messages; `time_limit`
    (seconds) replaces the global hard limit for it, the soft limit a little before.
    Usable bare (`@task`) or with options (`@task(role="admin")`).
    """

    def declare(f: F) -> F:
        where = f"{f.__module__}.{f.__qualname__}"
        task_name = name or f.__name__
        if not NAME.fullmatch(task_name):
            raise TypeError(
                f"@task on {where}: name {task_name!r} must be a letter then up to "
                "63 letters, digits or underscores"
            )
        try:
            task_role = Role(role)
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise TypeError(
                f"@task on {where}: role {role!r} is not one of {choices}"
            ) from None
        if time_limit is not None and not time_limit > 0:
            raise TypeError(f"@task on {where}: time_limit must be above 0 seconds")
        if queue is not None and not NAME.fullmatch(queue):
            raise TypeError(f"@task on {where}: queue {queue!r} is not a queue name")
        declaration = Declaration(f, task_name, task_role, queue, time_limit)
        setattr(f, ATTRIBUTE, declaration)
        return f

    return declare(func) if func is not None else declare


def declaration_of(obj: Any) -> Declaration | None:
    """The declaration `@task` left on `obj`, if any."""
    found = getattr(obj, ATTRIBUTE, None)
    return found if isinstance(found, Declaration) else None
