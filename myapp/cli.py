"""`flask --app wsgi tasks ...` (list the tasks, start a run, follow it),
`flask --app wsgi schedules ...` (list, add, pause, resume, delete, run now) and
`flask --app wsgi users ...` (manage users and their API tokens).

Whoever has a shell here is trusted with no password: `tasks run` acts as the user
`--as` names (the first admin by default) with that user's role, and `users`
manages everyone. Passwords and tokens are printed once and stored only as hashes.

Exit codes of `tasks run`: 0 started (with --wait: ended SUCCESS), 1 the run ended
FAILURE or REVOKED (or could not be started or was not allowed), 2 bad arguments,
130 interrupted. `users` commands exit 1 when the change cannot be made.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from myapp import localstack, runs, schedules, users
from myapp.models import Run
from myapp.tasks import UnknownTask, ValidationError, task_registry

tasks_cli = AppGroup("tasks", help="List the tasks and start runs.")
users_cli = AppGroup("users", help="Manage users, their roles and API tokens.")
schedules_cli = AppGroup(
    "schedules", help="Schedule tasks: beat starts them on an interval or cron."
)


@tasks_cli.command("list")
def list_command() -> None:
    """Print every task with its parameters, bounds and defaults."""
    for definition in task_registry().values():
        click.echo(f"{definition.name}: {definition.description}")
        click.echo(f"  needs the {definition.role} role")
        for spec in definition.fields:
            about = f": {spec.description}" if spec.description else ""
            click.echo(f"  {spec.name}=… ({spec.summary}){about}")


@tasks_cli.command("run")
@click.argument("name")
@click.argument("params", nargs=-1)
@click.option("--wait", is_flag=True, help="Show progress until the run ends.")
@click.option(
    "--as",
    "as_user",
    metavar="NAME",
    help="Start it as this user, with their role (default: the first admin).",
)
def run_command(
    name: str, params: tuple[str, ...], wait: bool, as_user: str | None
) -> None:
    """Start NAME with parameters given as key=value (lists as key=a,b, booleans as
    key=true or key=false; `tasks list` shows each task's parameters)."""
    require_stack()
    requester = _requester(as_user)
    raw: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="PARAMS")
        raw[key] = value
    try:
        run, _ = runs.start_run(
            name, raw, source="cli", requester=requester, from_text=True
        )
    except UnknownTask:
        known = ", ".join(task_registry())
        raise click.BadParameter(
            f"no task named {name!r} (known: {known})", param_hint="NAME"
        ) from None
    except ValidationError as exc:
        # The same field messages as the API and the forms, one per line.
        lines = "".join(f"\n  {k}: {v}" for k, v in exc.fields.items())
        raise click.UsageError(f"invalid parameters for {name}:{lines}") from None
    except (runs.StartRefused, runs.NotAllowed) as exc:
        raise click.ClickException(f"not started: {exc}") from None
    click.echo(f"run {run.id} {run.state}")
    click.echo(f"status: {run.status_url}")
    click.echo(f"page: /runs/{run.id}")
    if wait:
        try:
            state = _follow(run.id)
        except KeyboardInterrupt:
            click.echo(f"\nstopped following; the run goes on: {run.status_url}")
            sys.exit(130)
        sys.exit(0 if state == "SUCCESS" else 1)


def _follow(run_id: str, wait: float = 2.0) -> str:
    """Draw a progress bar and print the run's log lines as they come until the
    run ends; return its final state. Waits on the run's change notices, with a
    short bound so log lines written between two changes show up too."""
    shown, after = "", 0
    run = runs.get_run(run_id)
    while True:
        if run is None:
            click.echo("\nthe run disappeared from the history", err=True)
            return "FAILURE"
        page = runs.read_lines(run, after=after)
        if page["lines"]:
            click.echo("\r" + " " * len(shown) + "\r", nl=False)
            for entry in page["lines"]:
                click.echo(f"{entry['level']}: {entry['message']}")
            after, shown = page["next"], ""
        line = _progress_line(run)
        if line != shown:
            click.echo("\r" + line.ljust(len(shown)), nl=False)
            shown = line
        if run.finished:  # its lines were all written before it finished
            click.echo()
            if run.state == "FAILURE" and run.error_type:
                click.echo(f"error: {run.error_type}: {run.error_message}", err=True)
            elif run.state == "REVOKED":
                click.echo("the run was cancelled", err=True)
            elif run.state == "SUCCESS":
                click.echo(f"result: {json.dumps(run.result)}")
            return run.state
        run = runs.wait_for_change(run, wait, bounded=False)


def _progress_line(run: Run, width: int = 30) -> str:
    current, total = run.progress_current or 0, run.progress_total or 0
    fraction = 1.0 if run.state == "SUCCESS" else (current / total if total else 0.0)
    bar = "#" * int(fraction * width)
    return f"[{bar:<{width}}] {fraction:4.0%} {run.state} {run.progress_message or ''}"


def _requester(name: str | None) -> runs.Requester:
    """Who `tasks run` acts as: a shell is not rate-limited, but roles apply."""
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


# -- users ------------------------------------------------------------------------


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


def require_stack() -> None:
    """Stop a command that needs Redis, in one line, when nothing answers there: a
    run sent to no broker would wait forever."""
    try:
        localstack.require_redis(current_app.config)
    except localstack.StackUnreachable as exc:
        raise click.ClickException(str(exc)) from None


# -- schedules --------------------------------------------------------------------

_AS_OPTION = click.option(
    "--as",
    "as_user",
    metavar="NAME",
    help="Act as this user, with their role (default: the first admin).",
)


@schedules_cli.command("list")
def schedules_list_command() -> None:
    """Print every schedule: when it fires, its next fire time and its state."""
    for schedule in schedules.list_schedules():
        data = schedules.schedule_json(schedule)
        state = "enabled" if data["enabled"] else "paused"
        if data["paused_reason"]:
            state += f" ({data['paused_reason']})"
        params = " ".join(f"{k}={json.dumps(v)}" for k, v in data["params"].items())
        upcoming = data["next_runs"][0] if data["next_runs"] else "-"
        click.echo(
            f"{schedule.name}  {schedule.task} {params}".rstrip()
            + f"  [{data['describe']}]  next: {upcoming}  {state}"
        )


@schedules_cli.command("add")
@click.argument("name")
@click.argument("task")
@click.argument("params", nargs=-1)
@click.option("--every", "every_s", metavar="SECONDS", help="Seconds between runs.")
@click.option("--cron", metavar='"EXPR"', help='Five cron fields, e.g. "0 2 * * *".')
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA zone.")
@click.option("--description", default="", help="What it is for.")
@_AS_OPTION
def schedules_add_command(
    name: str,
    task: str,
    params: tuple[str, ...],
    every_s: str | None,
    cron: str | None,
    timezone: str,
    description: str,
    as_user: str | None,
) -> None:
    """Schedule TASK as NAME with parameters given as key=value (as `tasks run`)."""
    if (every_s is None) == (cron is None):
        raise click.UsageError("give exactly one of --every SECONDS or --cron EXPR")
    raw = {
        "name": name,
        "task": task,
        "params": _key_values(params),
        "timezone": timezone,
        "description": description,
        "every_s" if cron is None else "cron": every_s if cron is None else cron,
    }
    with _schedule_errors(task):
        schedule = schedules.create_schedule(raw, _requester(as_user), from_text=True)
    data = schedules.schedule_json(schedule)
    click.echo(f"schedule {schedule.name} (id {schedule.id}): {data['describe']}")
    click.echo("next: " + ", ".join(data["next_runs"]))


@schedules_cli.command("pause")
@click.argument("name")
@_AS_OPTION
def schedules_pause_command(name: str, as_user: str | None) -> None:
    """Stop beat from sending NAME until it is resumed."""
    with _schedule_errors():
        schedules.set_enabled(_schedule_named(name), False, _requester(as_user))
    click.echo(f"{name} is paused")


@schedules_cli.command("resume")
@click.argument("name")
@_AS_OPTION
def schedules_resume_command(name: str, as_user: str | None) -> None:
    """Let beat send NAME again, from its next fire time on."""
    with _schedule_errors():
        schedule = _schedule_named(name)
        schedules.set_enabled(schedule, True, _requester(as_user))
    reason = schedules.paused_reason(schedule)
    click.echo(f"{name} is enabled" + (f", but paused: {reason}" if reason else ""))


@schedules_cli.command("delete")
@click.argument("name")
@_AS_OPTION
def schedules_delete_command(name: str, as_user: str | None) -> None:
    """Delete NAME (its runs stay in the history)."""
    with _schedule_errors():
        schedules.delete_schedule(_schedule_named(name), _requester(as_user))
    click.echo(f"{name} is deleted")


@schedules_cli.command("run")
@click.argument("name")
@_AS_OPTION
def schedules_run_command(name: str, as_user: str | None) -> None:
    """Start NAME's task now with its parameters, as a start from the shell."""
    with _schedule_errors():
        run = schedules.run_now(
            _schedule_named(name), _requester(as_user), source="cli"
        )
    click.echo(f"run {run.id} {run.state}")
    click.echo(f"status: {run.status_url}")


def _key_values(items: tuple[str, ...]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="PARAMS")
        raw[key] = value
    return raw


def _schedule_named(name: str) -> schedules.Schedule:
    schedule = schedules.find_schedule(name)
    if schedule is None:
        raise click.BadParameter(f"no schedule is named {name!r}", param_hint="NAME")
    return schedule


@contextmanager
def _schedule_errors(task: str | None = None) -> Iterator[None]:
    """The service's refusals as the shell says them (exit 2 for bad input, 1 for
    a refusal)."""
    try:
        yield
    except UnknownTask:
        known = ", ".join(task_registry())
        raise click.BadParameter(
            f"no task named {task!r} (known: {known})", param_hint="TASK"
        ) from None
    except ValidationError as exc:
        lines = "".join(f"\n  {k}: {v}" for k, v in exc.fields.items())
        raise click.UsageError(f"not saved:{lines}") from None
    except (schedules.ScheduleNameTaken, runs.NotAllowed, runs.StartRefused) as exc:
        raise click.ClickException(str(exc)) from None


def cli_init_app(app: Flask) -> None:
    app.cli.add_command(tasks_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(schedules_cli)
