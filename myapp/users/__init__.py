"""Users, roles and API tokens: who may start, cancel and read runs.

- `roles`: viewer < operator < admin;
- `passwords`: the slow salted hash, and checks that take as long for an unknown
  user as for a wrong password;
- `accounts`: creating and changing users, signing in, sessions that end when a
  user is disabled or gets a new password;
- `tokens`: API tokens, stored as hashes.

Who is asking is decided at the edges (a session, a bearer token, `--as` on the
command line); what they may do is decided by admission and cancel in `myapp.runs`.
"""

from __future__ import annotations

from myapp.users.accounts import (
    AccountError,
    any_user,
    authenticate,
    create_user,
    disable,
    enable,
    first_admin,
    get_user,
    list_users,
    load_session_user,
    normalise_name,
    require_user,
    set_password,
    set_role,
)
from myapp.users.passwords import generate_password
from myapp.users.roles import ROLES, Role
from myapp.users.tokens import (
    issue_token,
    live_token_labels,
    live_tokens,
    revoke_token,
    revoke_tokens,
    user_for_token,
)

__all__ = [
    "ROLES",
    "AccountError",
    "Role",
    "any_user",
    "authenticate",
    "create_user",
    "disable",
    "enable",
    "first_admin",
    "generate_password",
    "get_user",
    "issue_token",
    "list_users",
    "live_token_labels",
    "live_tokens",
    "load_session_user",
    "normalise_name",
    "require_user",
    "revoke_token",
    "revoke_tokens",
    "set_password",
    "set_role",
    "user_for_token",
]
