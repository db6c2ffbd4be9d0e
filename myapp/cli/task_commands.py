"""`flask --app wsgi tasks ...`: list the tasks, start a run, follow it."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import AppGroup

from myapp import runs
from myapp.cli.common import key_values, requester, require_stack, task_errors
from myapp.models import Run
from myapp.tasks import task_registry

tasks_cli = AppGroup("tasks", help="List the tasks and start runs.")


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
    who = requester(as_user)
    raw = key_values(params)
    try:
        with task_errors(name, "NAME", f"invalid parameters for {name}"):
            run, _ = runs.start_run(
                name, raw, source="cli", requester=who, from_text=True
            )
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
