"""`flask --app wsgi tasks ...`: list the tasks, start a run, follow it.

Exit codes of `tasks run`: 0 started (with --wait: ended SUCCESS), 1 the run ended
FAILURE or REVOKED (or could not be started), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time

import click
from flask import Flask
from flask.cli import AppGroup

from myapp import runs
from myapp.extensions import db
from myapp.models import Run
from myapp.tasks import DEFINITIONS, UnknownTask, ValidationError

tasks_cli = AppGroup("tasks", help="List the tasks and start runs.")


@tasks_cli.command("list")
def list_command() -> None:
    """Print every task with its parameters, bounds and defaults."""
    for definition in DEFINITIONS:
        click.echo(f"{definition.name}: {definition.description}")
        for name, schema in definition.schema()["properties"].items():
            bounds = [
                f"{k}={schema[k]}"
                for k in ("minimum", "maximum", "enum")
                if k in schema
            ]
            kind = (
                schema["type"] if isinstance(schema["type"], str) else schema["type"][0]
            )
            click.echo(
                f"  {name} ({kind}; default={schema.get('default')}"
                f"{'; ' + ', '.join(bounds) if bounds else ''}): "
                f"{schema['description']}"
            )


@tasks_cli.command("run")
@click.argument("name")
@click.argument("params", nargs=-1)
@click.option("--wait", is_flag=True, help="Show progress until the run ends.")
def run_command(name: str, params: tuple[str, ...], wait: bool) -> None:
    """Start NAME with parameters given as key=value."""
    raw: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="PARAMS")
        raw[key] = value
    try:
        run, _ = runs.start_run(name, raw, source="cli", from_text=True)
    except UnknownTask:
        known = ", ".join(d.name for d in DEFINITIONS)
        raise click.BadParameter(
            f"no task named {name!r} (known: {known})", param_hint="NAME"
        ) from None
    except ValidationError as exc:
        # The same field messages as the API and the forms, one per line.
        lines = "".join(f"\n  {k}: {v}" for k, v in exc.fields.items())
        raise click.UsageError(f"invalid parameters for {name}:{lines}") from None
    except runs.StartRefused as exc:
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


def _follow(run_id: str, poll: float = 0.25) -> str:
    """Draw a progress bar until the run ends; return its final state."""
    shown = ""
    while True:
        db.session.expire_all()
        run = runs.get_run(run_id)
        if run is None:
            click.echo("\nthe run disappeared from the history", err=True)
            return "FAILURE"
        line = _progress_line(run)
        if line != shown:
            click.echo("\r" + line.ljust(len(shown)), nl=False)
            shown = line
        if run.finished:
            click.echo()
            if run.state == "FAILURE" and run.error_type:
                click.echo(f"error: {run.error_type}: {run.error_message}", err=True)
            elif run.state == "REVOKED":
                click.echo("the run was cancelled", err=True)
            elif run.state == "SUCCESS":
                click.echo(f"result: {json.dumps(run.result)}")
            return run.state
        time.sleep(poll)


def _progress_line(run: Run, width: int = 30) -> str:
    current, total = run.progress_current or 0, run.progress_total or 0
    fraction = 1.0 if run.state == "SUCCESS" else (current / total if total else 0.0)
    bar = "#" * int(fraction * width)
    return f"[{bar:<{width}}] {fraction:4.0%} {run.state} {run.progress_message or ''}"


def cli_init_app(app: Flask) -> None:
    app.cli.add_command(tasks_cli)
