"""A parameter of a class of the team's own, which pydantic cannot describe."""

from myapp.tasks import RunContext, task


class Printer:
    def __init__(self, name: str):
        self.name = name


@task
def print_page(
    ctx: RunContext, copies: int = 1, printer: Printer | None = None
) -> None:
    """Print a page."""
