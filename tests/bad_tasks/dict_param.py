"""A parameter no form can show: a mapping of anything."""

from myapp.tasks import RunContext, task


@task
def configure(ctx: RunContext, options: dict[str, object] | None = None) -> None:
    """Take free-form options."""
