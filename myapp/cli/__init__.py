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

from flask import Flask

from myapp.cli.schedule_commands import schedules_cli
from myapp.cli.task_commands import tasks_cli
from myapp.cli.user_commands import users_cli


def cli_init_app(app: Flask) -> None:
    app.cli.add_command(tasks_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(schedules_cli)
