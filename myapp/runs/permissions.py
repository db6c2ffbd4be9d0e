"""Who may start and cancel which runs: the one place the rules are written.

- a task's definition names the lowest role that may start it (`TaskDefinition.role`);
  re-running is starting, with the same rule;
- an operator cancels the runs they started; an admin cancels any run;
- a viewer reads, and neither starts nor cancels.

The edges (API, forms, Dash, the command line) decide who is asking and hand a
`Requester` to admission and cancel, which apply these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from myapp.models import Run
from myapp.runs.errors import NotAllowed
from myapp.tasks import TaskDefinition
from myapp.users import Role


@dataclass(frozen=True)
class Requester:
    """Who asks: a user's name and role, as an edge authenticated them (role None:
    nobody signed in). `limit_key` names the START_RATE_LIMIT bucket (the user, or
    the address of an anonymous caller); None is not counted (an operator's shell).
    """

    name: str | None
    role: Role | None
    limit_key: str | None = None


def may_start(requester: Requester, definition: TaskDefinition) -> bool:
    return requester.role is not None and requester.role.allows(definition.role)


def may_cancel(requester: Requester, run: Run) -> bool:
    if requester.role is None:
        return False
    if requester.role.allows(Role.ADMIN):
        return True
    return (
        requester.role.allows(Role.OPERATOR)
        and run.created_by is not None
        and run.created_by == requester.name
    )


def check_start(requester: Requester, definition: TaskDefinition) -> None:
    if not may_start(requester, definition):
        raise NotAllowed(
            f"starting {definition.name} needs the {definition.role} role"
            + _yours(requester)
        )


def check_cancel(requester: Requester, run: Run) -> None:
    if not may_cancel(requester, run):
        raise NotAllowed(
            "only an admin or the operator who started a run may cancel it"
            + _yours(requester)
        )


def _yours(requester: Requester) -> str:
    if requester.role is None:
        return "; sign in first"
    return f" (you are {requester.name or 'signed in'}, {requester.role})"
