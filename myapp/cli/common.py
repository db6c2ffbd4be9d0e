"""What the command groups share: who a command acts as, key=value parameters,
and the check that Redis answers before a run is sent."""

from __future__ import annotations

import click
from flask import current_app

from myapp import localstack, runs, users


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
