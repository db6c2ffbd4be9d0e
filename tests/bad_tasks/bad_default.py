"""A default the declaration's own bounds refuse."""

from typing import Annotated

from pydantic import Field

from myapp.tasks import RunContext, task


@task
def resize(ctx: RunContext, width: Annotated[int, Field(ge=16, le=4096)] = 8) -> int:
    """Resize to a width."""
    return width
