"""A task module that fails while it is imported."""

from myapp.tasks import RunContext, task

raise RuntimeError("the report server is not configured")


@task
def never_declared(ctx: RunContext) -> None:
    """Never reached."""
