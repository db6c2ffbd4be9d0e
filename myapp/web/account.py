"""The signed-in user's own things: `/tokens`, their API tokens.

A token is shown once, in the answer to the form that made it; the page then puts
`/tokens` in the address bar, so a reload shows the list, never the token again.
Only the user's own tokens are listed or revoked here (admins manage others' from
the command line).
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from myapp import users
from myapp.users.tokens import MAX_LABEL_LENGTH

bp = Blueprint("account", __name__)

# The answer holding a new token must not be kept by the browser or a proxy.
NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/tokens")
def list_tokens():
    return _tokens_page()


@bp.post("/tokens")
def create_token():
    label = request.form.get("label", "").strip()
    try:
        token = users.issue_token(current_user.name, label)
    except users.AccountError as exc:
        return _tokens_page(label=label, error=f"Label: {exc}.", status=422)
    return _tokens_page(new_token=token, new_label=label, headers=NO_STORE)


@bp.post("/tokens/<token_id>/revoke")
def revoke_token(token_id: str):
    # A plain string route: the sign-in gate answers before any 404 for a bad id.
    label = next(
        (t.label for t in users.live_tokens(current_user) if str(t.id) == token_id),
        None,
    )
    if label is None or not users.revoke_token(current_user, int(token_id)):
        abort(404, description="You have no working token with that id.")
    return _tokens_page(notice=f"Revoked the token “{label}”: it no longer works.")


def _tokens_page(
    *,
    new_token: str | None = None,
    new_label: str | None = None,
    notice: str | None = None,
    label: str = "",
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
):
    page = render_template(
        "tokens.html",
        tokens=users.live_tokens(current_user),
        new_token=new_token,
        new_label=new_label,
        notice=notice,
        label=label,
        error=error,
        max_label=MAX_LABEL_LENGTH,
        page_url="/tokens",
    )
    return page, status, headers or {}
