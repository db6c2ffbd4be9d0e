"""Users: create them, change their role or password, disable them, and sign them in.

Every change that must end a user's sessions (disabling, a new password) raises the
user's `auth_epoch`; a session signed in under an older epoch is refused at its next
request (`load_session_user`).
"""

from __future__ import annotations

import re

from sqlalchemy import select, update

from myapp.extensions import db
from myapp.models import USER_NAME_LENGTH, User
from myapp.users.passwords import (
    hash_password,
    password_problem,
    verify_password,
)
from myapp.users.roles import ROLES, Role

# Lower-case letters, digits and a few separators: safe in URLs, logs and filters.
_NAME = re.compile(rf"[a-z0-9][a-z0-9_.@-]{{0,{USER_NAME_LENGTH - 1}}}")


class AccountError(ValueError):
    """A user-management request that cannot be done; `str()` says why."""


def normalise_name(name: str) -> str:
    """User names are case-insensitive: `Ada` signs in as `ada`."""
    return name.strip().lower()


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise AccountError(f"role must be one of {', '.join(ROLES)}") from None


def create_user(name: str, role: str, password: str | None) -> User:
    """A new enabled user. `password=None` makes a user who cannot sign in with a
    password (API tokens only)."""
    name = normalise_name(name)
    if not _NAME.fullmatch(name):
        raise AccountError(
            f"user name must be 1 to {USER_NAME_LENGTH} characters: lower-case "
            "letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
        )
    parsed = parse_role(role)
    if get_user(name) is not None:
        raise AccountError(f"a user named {name!r} already exists")
    user = User(
        name=name,
        role=parsed.value,
        password_hash=_hashed(password),
        disabled=False,
        auth_epoch=0,
    )
    db.session.add(user)
    db.session.commit()
    return user


def get_user(name: str) -> User | None:
    return db.session.scalar(select(User).where(User.name == normalise_name(name)))


def require_user(name: str) -> User:
    user = get_user(name)
    if user is None:
        raise AccountError(f"no user is named {normalise_name(name)!r}")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.name)))


def any_user() -> bool:
    return db.session.scalar(select(User.id).limit(1)) is not None


def first_admin() -> User | None:
    """The oldest enabled admin: who `tasks run` acts as when not told."""
    return db.session.scalar(
        select(User)
        .where(User.role == Role.ADMIN.value, User.disabled.is_(False))
        .order_by(User.id)
        .limit(1)
    )


def set_role(name: str, role: str) -> User:
    """A new role takes effect at the user's next request (roles are read each
    time, never kept in a session)."""
    user = require_user(name)
    parsed = parse_role(role)
    if parsed is not Role.ADMIN:
        _keep_an_admin(user, "lose the admin role")
    user.role = parsed.value
    db.session.commit()
    return user


def set_password(name: str, password: str) -> User:
    """Change the password and end every session of the user."""
    user = require_user(name)
    user.password_hash = _hashed(password)
    _end_sessions(user)
    return user


def disable(name: str) -> User:
    """Refuse the user's sessions and tokens from their next request on."""
    user = require_user(name)
    _keep_an_admin(user, "be disabled")
    user.disabled = True
    _end_sessions(user)
    return user


def enable(name: str) -> User:
    """Let the user sign in again; sessions ended by `disable` stay ended."""
    user = require_user(name)
    user.disabled = False
    db.session.commit()
    return user


def _keep_an_admin(user: User, change: str) -> None:
    """Refuse to leave the team without an enabled admin: nobody could manage users
    or prune runs, and only a shell on the database could undo it. (Two operators
    demoting the last two admins at the same moment could still both pass.)"""
    if user.role != Role.ADMIN.value or user.disabled:
        return
    others = db.session.scalar(
        select(User.id)
        .where(User.role == Role.ADMIN.value, User.disabled.is_(False))
        .where(User.id != user.id)
        .limit(1)
    )
    if others is None:
        raise AccountError(
            f"{user.name} is the last enabled admin and cannot {change}: "
            "make another user admin first"
        )


def authenticate(name: str, password: str) -> User | None:
    """The enabled user with this name and password, or None. An unknown name, a
    wrong password and a disabled user all take one password check and give the
    same None."""
    user = get_user(name) if _NAME.fullmatch(normalise_name(name)) else None
    matched = verify_password(user.password_hash if user else None, password)
    if user is None or not matched or user.disabled:
        return None
    return user


def load_session_user(session_id: str) -> User | None:
    """The user a session names ("<id>:<epoch>"), if still enabled and signed in
    under the current epoch."""
    user_id, _, epoch = session_id.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.disabled or user.auth_epoch != int(epoch):
        return None
    return user


def _hashed(password: str | None) -> str | None:
    if password is None:
        return None
    problem = password_problem(password)
    if problem is not None:
        raise AccountError(f"password {problem}")
    return hash_password(password)


def _end_sessions(user: User) -> None:
    # One UPDATE that adds one, so two concurrent changes both count.
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(auth_epoch=User.auth_epoch + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
