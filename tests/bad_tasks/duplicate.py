"""A task named like a built-in one."""

from myapp.tasks import RunContext, task


@task(name="generate_data")
def make_rows(ctx: RunContext, rows: int = 1) -> int:
    """Make rows our own way."""
    return rows
