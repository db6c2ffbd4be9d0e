"""API tokens: random, shown once when made, stored only as their SHA-256.

A token has 256 bits of randomness, so a plain (unsalted) SHA-256 is enough to keep
the database from holding anything usable, and it lets a request find its token with
one indexed lookup. A revoked token, or any token of a disabled user, stops working
at the next request.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import Select, bindparam, select, update

from myapp.extensions import db
from myapp.models import ApiToken, User, utcnow
from myapp.users.accounts import AccountError, require_user

# A recognisable prefix lets secret scanners (and people) spot a leaked token.
PREFIX = "myapp_"
MAX_LABEL_LENGTH = 100
DEFAULT_LABEL = "default"
# `last_used_at` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(name: str, label: str = DEFAULT_LABEL) -> str:
    """Make a token for the user and return it: the only time it is seen."""
    user = require_user(name)
    label = label.strip()
    if not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise AccountError(f"label must be 1 to {MAX_LABEL_LENGTH} characters")
    token = PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, label=label, token_hash=token_hash(token)))
    db.session.commit()
    return token


def revoke_tokens(name: str, label: str | None = None) -> int:
    """Revoke the user's live tokens with this label (every one when None); returns
    how many."""
    user = require_user(name)
    query = (
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if label is not None:
        query = query.where(ApiToken.label == label.strip())
    count = db.session.execute(query).rowcount
    db.session.commit()
    return count


def live_tokens(user: User) -> list[ApiToken]:
    """The user's tokens that still work, oldest first (labels, dates; no secret:
    only hashes are stored)."""
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id)
        )
    )


def revoke_token(user: User, token_id: int) -> bool:
    """Revoke one live token of this user; False when it is not theirs, unknown or
    revoked already."""
    query = (
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    count = db.session.execute(query).rowcount
    db.session.commit()
    return count == 1


def live_token_labels(user: User) -> list[str]:
    return list(
        db.session.scalars(
            select(ApiToken.label)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id)
        )
    )


@functools.cache
def _user_by_token_hash() -> Select:
    """One indexed lookup of a live token and its enabled user; only the user
    becomes an ORM object (it is what the request carries as current_user). Built
    once: every API request runs it, and building it costs as much as running it."""
    return (
        select(User, ApiToken.id, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == bindparam("token_hash"))
        .where(ApiToken.revoked_at.is_(None), User.disabled.is_(False))
    )


def user_for_token(token: str) -> User | None:
    """The enabled user a live token belongs to, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    found = db.session.execute(
        _user_by_token_hash(), {"token_hash": token_hash(token)}
    ).first()
    if found is None:
        return None
    user, token_id, last_used_at = found
    now = utcnow()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        db.session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
        )
        db.session.commit()
    return user
