"""Passwords: stored only as werkzeug's salted scrypt hash (n=2**15, r=8, p=1:
about 32 MiB and some tens of milliseconds per check), never in the clear."""

from __future__ import annotations

import functools
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

METHOD = "scrypt"
MIN_LENGTH = 8
# Longer inputs are not stronger, only slower to hash.
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=METHOD)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash. Without a hash (an unknown user,
    a user with no password) a dummy hash is checked all the same, so the answer
    takes as long as for a wrong password and timing tells nothing."""
    if stored is None:
        check_password_hash(_dummy_hash(), password)
        return False
    return check_password_hash(stored, password)


def generate_password() -> str:
    """A random password to print once: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def password_problem(password: str) -> str | None:
    """What is wrong with a chosen password, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


@functools.cache
def _dummy_hash() -> str:
    # Made once per process with the real method and cost, so checking it costs
    # exactly what checking a real hash does.
    return hash_password(secrets.token_urlsafe(16))
