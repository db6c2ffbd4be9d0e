"""Security at the edge: who is asking, and the response headers.

- `current_requester()`: the signed-in user (name and role) as admission and cancel
  see them, and the bucket START_RATE_LIMIT counts (the user; the client address
  only for a caller nobody signed in); API, forms and Dash all pass it to `runs`.
- Headers on every response: a Content-Security-Policy (strict for Flask pages;
  Dash pages get the hashes of Dash's inline scripts and `unsafe-eval`, which
  Plotly and AG Grid need), nosniff, frame denial, a referrer policy, and HSTS
  outside development.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_login import current_user

from myapp.runs import Requester
from myapp.users import Role

# Flask pages and the API: only our own files, no inline script or style.
_BASE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def security_init_app(app: Flask) -> None:
    app.extensions["security"] = {"base_csp": _render(_BASE_CSP), "dash_csp": None}
    app.after_request(_security_headers)


def current_requester() -> Requester:
    """Who is asking, as admission, cancel and the start rate limit see them."""
    if current_user.is_authenticated:
        return Requester(
            name=current_user.name,
            role=Role(current_user.role),
            limit_key=f"user:{current_user.name}",
        )
    return Requester(
        name=None, role=None, limit_key=f"addr:{request.remote_addr or 'unknown'}"
    )


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _csp_for(request.path))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config["APP_ENV"] != "development":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _csp_for(path: str) -> str:
    dash_app = current_app.extensions.get("dash")
    prefix = getattr(getattr(dash_app, "config", None), "routes_pathname_prefix", None)
    cache = current_app.extensions["security"]
    if dash_app is None or not prefix or not path.startswith(prefix):
        return cache["base_csp"]
    if cache["dash_csp"] is None:
        # Dash renders inline scripts (the renderer start, clientside callbacks);
        # allow exactly those by hash. Computed on first use, once every callback
        # of the app is defined.
        policy = {k: list(v) for k, v in _BASE_CSP.items()}
        policy["script-src"] += ["'unsafe-eval'", *dash_app.csp_hashes()]
        # Plotly and AG Grid inject <style> elements and style attributes.
        policy["style-src"].append("'unsafe-inline'")
        policy["img-src"].append("blob:")
        policy["worker-src"] = ["'self'", "blob:"]
        cache["dash_csp"] = _render(policy)
    return cache["dash_csp"]


def _render(policy: dict[str, list[str]]) -> str:
    return "; ".join(f"{name} {' '.join(values)}" for name, values in policy.items())
