"""The three roles, lowest first. Each role may do everything the ones below it may."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """`viewer` reads everything; `operator` also starts the tasks that allow
    operators and cancels their own runs; `admin` may do anything."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role is `needed` or above it."""
        return self.rank >= needed.rank


_ORDER = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
ROLES: tuple[str, ...] = tuple(r.value for r in _ORDER)
