"""Test clients that call as a user: an API token on every request, or a request
context whose caller is a given user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.testing import FlaskClient

if TYPE_CHECKING:
    from flask import Flask
    from flask.ctx import RequestContext


class TokenClient(FlaskClient):
    """A test client that sends `Authorization: Bearer <token>` on every request:
    `default_token` unless `token=` says otherwise (None: an anonymous caller)."""

    default_token: str | None = None

    def __init__(self, *args: Any, token: str | None = "default", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if token == "default":
            token = self.default_token
        if token is not None:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    @classmethod
    def calling_as(cls, token: str | None) -> type[TokenClient]:
        """The class of clients that call with `token` unless told otherwise."""
        return type("TokenClient", (cls,), {"default_token": token})


def as_user(app: Flask, token: str | None = None) -> RequestContext:
    """A request context whose caller is the user of `token` (the app's test
    clients' by default), for code that reads the signed-in user outside a request
    sent by a client (Dash's callback core)."""
    token = token or getattr(app.test_client_class, "default_token", None)
    return app.test_request_context(headers={"Authorization": f"Bearer {token}"})
