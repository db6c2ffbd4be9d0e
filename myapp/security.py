"""Security at the edge: response headers, the start rate limit, per-task limits.

- Headers on every response: a Content-Security-Policy (strict for Flask pages;
  Dash pages get the hashes of Dash's inline scripts and `unsafe-eval`, which
  Plotly and AG Grid need), nosniff, frame denial, a referrer policy, and HSTS
  outside development.
- START_RATE_LIMIT: run starts per client address over the API and the HTML form
  together, counted in Redis so every web process shares the count. Only those
  POSTs are counted; Dash polling and every GET pass untouched. When Redis is
  down the count falls back to process memory: an accepted start is never refused
  because the limiter's storage is away (the outbox takes the run).
- 429 with the task's name when MAX_ACTIVE_RUNS_PER_TASK runs of it are active.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from myapp.errors import error_response
from myapp.runs import TooManyActiveRunsOfTask

# The endpoints that start a run: the JSON API and the HTML form.
START_ENDPOINTS = frozenset({"api.create_run", "views.create_run"})

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
    _limiter_init_app(app)
    app.extensions["security"] = {"dash_csp": None}
    app.after_request(_security_headers)

    @app.errorhandler(TooManyActiveRunsOfTask)
    def _too_many_of_task(exc: TooManyActiveRunsOfTask):
        return error_response(429, "too_many_active_runs", str(exc))


def _limiter_init_app(app: Flask) -> Limiter:
    rate = str(app.config["START_RATE_LIMIT"]).strip()
    enabled = rate.lower() not in ("off", "")
    limiter = Limiter(
        get_remote_address,
        application_limits=[rate] if enabled else [],
        # While Redis is away, count in this process instead of refusing starts.
        in_memory_fallback=[rate] if enabled else [],
        in_memory_fallback_enabled=enabled,
        swallow_errors=True,
        storage_uri=app.config["REDIS_URL"],
        # A dead Redis must cost a start milliseconds, not a hung request.
        storage_options={
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            "key_prefix": "myapp:limits",
        },
        strategy="fixed-window",
        headers_enabled=True,
        enabled=enabled,
    )

    # A request filter exempts from every limit, the in-memory fallback included.
    @limiter.request_filter
    def _not_a_start() -> bool:
        return request.method != "POST" or request.endpoint not in START_ENDPOINTS

    limiter.init_app(app)
    return limiter


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
    if dash_app is None or not prefix or not path.startswith(prefix):
        return _render(_BASE_CSP)
    cache = current_app.extensions["security"]
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
