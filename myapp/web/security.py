"""Security at the edge: the response headers. (Who is asking is
`myapp.edge.current_requester`, shared with Dash.)

- Headers on every response: a Content-Security-Policy (strict for Flask pages;
  Dash pages get the hashes of Dash's inline scripts and `unsafe-eval`, which
  Plotly and AG Grid need), nosniff, frame denial, a referrer policy, and HSTS
  outside development.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

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
