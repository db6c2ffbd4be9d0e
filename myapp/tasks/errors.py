"""The errors of tasks: bad parameters, a declaration that cannot be served, an
unknown name, a cancelled run."""

from __future__ import annotations


class ValidationError(Exception):
    """Bad task parameters: `fields` maps each parameter to what is wrong with it."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{name}: {msg}" for name, msg in fields.items()))


class TaskDeclarationError(RuntimeError):
    """A task that cannot be served: a bad signature, an undescribable parameter
    type, a module that does not import, two tasks with one name. Raised when the
    app is built, so every process stops at start with the message."""


class UnknownTask(LookupError):
    """No task has that name."""


class RunCancelled(Exception):
    """Raised inside a task when its run was revoked: stop working."""
