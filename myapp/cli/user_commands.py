"""`flask --app wsgi users ...`: create users, set roles and passwords, disable
and enable them, issue and revoke API tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask.cli import AppGroup

from myapp import users

users_cli = AppGroup("users", help="Manage users, their roles and API tokens.")


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set and whether it was generated (then it is printed)."""
    if not from_stdin:
        return users.generate_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    return line, False


@users_cli.command("create")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(users.ROLES, case_sensitive=False),
    help="What the user may do.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input "
    "instead of printing a generated one.",
)
@click.option(
    "--if-no-users",
    is_flag=True,
    help="Do nothing (and print nothing) when any user exists already: "
    "for first-start scripts.",
)
def create_command(
    name: str, role: str, password_stdin: bool, if_no_users: bool
) -> None:
    """Create user NAME with ROLE."""
    if if_no_users and users.any_user():
        return
    password, generated = _password(password_stdin)
    with _account_errors():
        user = users.create_user(name, role, password)
    click.echo(f"created user {user.name} ({user.role})")
    if generated:
        click.echo(f"password: {password}")


@users_cli.command("list")
def list_users_command() -> None:
    """Print every user: name, role, enabled or disabled, live token labels."""
    found = users.list_users()
    if not found:
        click.echo("no users yet: `flask --app wsgi users create NAME --role admin`")
    for user in found:
        labels = users.live_token_labels(user)
        tokens = f"tokens: {', '.join(labels)}" if labels else "no tokens"
        state = "disabled" if user.disabled else "enabled"
        click.echo(f"{user.name}\t{user.role}\t{state}\t{tokens}")


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(users.ROLES, case_sensitive=False))
def set_role_command(name: str, role: str) -> None:
    """Give NAME a new ROLE (effective at their next request)."""
    with _account_errors():
        user = users.set_role(name, role)
    click.echo(f"{user.name} is now {user.role}")


@users_cli.command("set-password")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input "
    "instead of printing a generated one.",
)
def set_password_command(name: str, password_stdin: bool) -> None:
    """Give NAME a new password; their sessions end."""
    password, generated = _password(password_stdin)
    with _account_errors():
        user = users.set_password(name, password)
    click.echo(f"new password set for {user.name}; their sessions have ended")
    if generated:
        click.echo(f"password: {password}")


@users_cli.command("disable")
@click.argument("name")
def disable_command(name: str) -> None:
    """Stop NAME's sessions and tokens from their next request on."""
    with _account_errors():
        user = users.disable(name)
    click.echo(f"{user.name} is disabled")


@users_cli.command("enable")
@click.argument("name")
def enable_command(name: str) -> None:
    """Let NAME sign in and use their tokens again."""
    with _account_errors():
        user = users.enable(name)
    click.echo(f"{user.name} is enabled")


@users_cli.command("token")
@click.argument("name")
@click.option("--label", default="default", show_default=True, help="What it is for.")
def token_command(name: str, label: str) -> None:
    """Make an API token for NAME and print it (only this once)."""
    with _account_errors():
        token = users.issue_token(name, label)
    click.echo(token)


@users_cli.command("revoke-token")
@click.argument("name")
@click.option("--label", help="Revoke NAME's tokens with this label.")
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every token of NAME.")
def revoke_token_command(name: str, label: str | None, revoke_all: bool) -> None:
    """Revoke tokens of NAME (effective at their next request)."""
    if (label is None) == (not revoke_all):
        raise click.UsageError("give exactly one of --label TEXT or --all")
    with _account_errors():
        count = users.revoke_tokens(name, None if revoke_all else label)
    click.echo(f"revoked {count} token{'s' if count != 1 else ''} of {name}")
    if count == 0:
        sys.exit(1)


@contextmanager
def _account_errors() -> Iterator[None]:
    try:
        yield
    except users.AccountError as exc:
        raise click.ClickException(str(exc)) from None
