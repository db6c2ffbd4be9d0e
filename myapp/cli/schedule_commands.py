"""`flask --app wsgi schedules ...`: list, add, pause, resume, delete, run now."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask.cli import AppGroup

from myapp import runs, schedules
from myapp.cli.common import key_values, requester, task_errors

schedules_cli = AppGroup(
    "schedules", help="Schedule tasks: beat starts them on an interval or cron."
)

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
        "params": key_values(params),
        "timezone": timezone,
        "description": description,
        "every_s" if cron is None else "cron": every_s if cron is None else cron,
    }
    with _schedule_errors(task):
        schedule = schedules.create_schedule(raw, requester(as_user), from_text=True)
    data = schedules.schedule_json(schedule)
    click.echo(f"schedule {schedule.name} (id {schedule.id}): {data['describe']}")
    click.echo("next: " + ", ".join(data["next_runs"]))


@schedules_cli.command("pause")
@click.argument("name")
@_AS_OPTION
def schedules_pause_command(name: str, as_user: str | None) -> None:
    """Stop beat from sending NAME until it is resumed."""
    with _schedule_errors():
        schedules.set_enabled(_schedule_named(name), False, requester(as_user))
    click.echo(f"{name} is paused")


@schedules_cli.command("resume")
@click.argument("name")
@_AS_OPTION
def schedules_resume_command(name: str, as_user: str | None) -> None:
    """Let beat send NAME again, from its next fire time on."""
    with _schedule_errors():
        schedule = _schedule_named(name)
        schedules.set_enabled(schedule, True, requester(as_user))
    reason = schedules.paused_reason(schedule)
    click.echo(f"{name} is enabled" + (f", but paused: {reason}" if reason else ""))


@schedules_cli.command("delete")
@click.argument("name")
@_AS_OPTION
def schedules_delete_command(name: str, as_user: str | None) -> None:
    """Delete NAME (its runs stay in the history)."""
    with _schedule_errors():
        schedules.delete_schedule(_schedule_named(name), requester(as_user))
    click.echo(f"{name} is deleted")


@schedules_cli.command("run")
@click.argument("name")
@_AS_OPTION
def schedules_run_command(name: str, as_user: str | None) -> None:
    """Start NAME's task now with its parameters, as a start from the shell."""
    with _schedule_errors():
        run = schedules.run_now(_schedule_named(name), requester(as_user), source="cli")
    click.echo(f"run {run.id} {run.state}")
    click.echo(f"status: {run.status_url}")


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
        with task_errors(task, "TASK", "not saved"):
            yield
    except (schedules.ScheduleNameTaken, runs.NotAllowed, runs.StartRefused) as exc:
        raise click.ClickException(str(exc)) from None
