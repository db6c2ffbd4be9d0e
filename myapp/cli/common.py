"""What the command groups share: who a command acts as, key=value parameters,
a task's name or parameters refused, and the check that Redis answers before a run
is sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app

from myapp import localstack, runs, users
from myapp.tasks import UnknownTask, ValidationError, task_registry


def requester(name: str | None) -> runs.Requester:
    """Who a command acts as (`--as NAME`, else the first admin): a shell is not
    rate-limited, but roles apply."""
    if name is None:
        user = users.first_admin()
        if user is None:
            raise click.ClickException(
                "no enabled admin to run as: create one with "
                "`flask --app wsgi users create NAME --role admin`, or give --as NAME"
            )
    else:
        user = users.get_user(name)
        if user is None or user.disabled:
            state = "is disabled" if user else "does not exist"
            raise click.BadParameter(
                f"user {users.normalise_name(name)!r} {state}", param_hint="--as"
            )
    return runs.Requester(name=user.name, role=users.Role(user.role), limit_key=None)


def key_values(items: tuple[str, ...]) -> dict[str, str]:
    """Parameters given as key=value on the command line, as text."""
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="PARAMS")
        raw[key] = value
    return raw


def require_stack() -> None:
    """Stop a command that needs Redis, in one line, when nothing answers there: a
    run sent to no broker would wait forever."""
    try:
        localstack.require_redis(current_app.config)
    except localstack.StackUnreachable as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def task_errors(name: str | None, param_hint: str, refused: str) -> Iterator[None]:
    """An unknown task or bad parameters, as the shell says them (exit 2): the
    known names, or the same field messages as the API and the forms, one per
    line after `refused`."""
    try:
        yield
    except UnknownTask:
        known = ", ".join(task_registry())
        raise click.BadParameter(
            f"no task named {name!r} (known: {known})", param_hint=param_hint
        ) from None
    except ValidationError as exc:
        lines = "".join(f"\n  {k}: {v}" for k, v in exc.fields.items())
        raise click.UsageError(f"{refused}:{lines}") from None
