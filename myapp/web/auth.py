"""Signing in, and the gate every request passes: who is asking, and may they ask.

- A browser signs in at `/login` (a Flask-Login session) and out with `POST /logout`.
- An API client sends `Authorization: Bearer <token>`; a request with that header is
  judged by the token alone, whatever cookies it also carries.
- `_gate` (before every request): only the open endpoints answer anonymous callers
  (`/healthz`, `/readyz`, `/login`, static files, `/api/openapi.json`, and whatever
  `allow_anonymous` adds: `/metrics` when METRICS_PUBLIC is on); the API, `/metrics`
  and Dash's JSON routes answer 401, pages redirect to `/login?next=…`. Unsafe
  methods need the CSRF token unless a bearer token authenticates an API or Dash
  request: HTML forms always carry it, the API and Dash send it in `X-CSRFToken`
  (Dash reads it from the `_csrf_token` cookie set on its pages, as its renderer
  expects).
- LOGIN_RATE_LIMIT counts sign-in attempts per address and per user name.

What a signed-in user may do is decided further in, by `myapp.runs` (admission and
cancel), from the `Requester` that `current_requester()` builds.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import generate_csrf

from myapp import users
from myapp.extensions import csrf, login_manager
from myapp.models import User
from myapp.ratelimit import RateLimit, RateLimitExceeded
from myapp.redis_clients import redis_target

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

# Dash is mounted here (myapp.dashboard); its routes are told apart by path.
DASH_PREFIX = "/dash/"
_DASH_STATIC = ("_dash-component-suites/", "assets/", "_favicon.ico")
_UNSAFE = frozenset(("POST", "PUT", "PATCH", "DELETE"))
# Endpoints that answer without credentials.
OPEN_ENDPOINTS = frozenset(
    ("health.healthz", "health.readyz", "auth.login", "api.openapi", "static")
)
# The cookie dash-renderer reads and sends back as X-CSRFToken.
DASH_CSRF_COOKIE = "_csrf_token"
MAX_NEXT_LENGTH = 2000
WRONG_CREDENTIALS = "Wrong user name or password."
BEARER_CHALLENGE = 'Bearer realm="myapp"'


def allow_anonymous(app: Flask, endpoint: str) -> None:
    """Let `endpoint` answer callers without credentials (e.g. /metrics when the
    operator makes it public)."""
    app.extensions["auth"]["open_endpoints"].add(endpoint)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site.

    `//evil.example`, `https://evil.example`, `/\\evil.example` (browsers read a
    backslash as a slash) and anything with control characters become `/`.
    """
    if not target or len(target) > MAX_NEXT_LENGTH:
        return "/"
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


# -- the pages ---------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(target)
        return render_template("login.html", next=target, username="", error=None)
    name = request.form.get("username", "")
    password = request.form.get("password", "")
    try:
        current_app.extensions["login_limiter"].hit(*_login_keys(name))
    except RateLimitExceeded as exc:
        log.warning("sign-in throttled from %s", request.remote_addr)
        message = f"Too many sign-in attempts; try again in {exc.retry_after} seconds."
        page = render_template("login.html", next=target, username=name, error=message)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    user = users.authenticate(name, password)
    if user is None:
        # The same page and status for an unknown name and a wrong password; the
        # log names only users that exist (a password typed into the name field
        # must not end up in a log).
        known = users.get_user(name) if len(name) <= 200 else None
        log.warning(
            "sign-in failed for %s from %s",
            known.name if known else "an unknown user",
            request.remote_addr,
        )
        page = render_template(
            "login.html", next=target, username=name, error=WRONG_CREDENTIALS
        )
        return page, 401, {"WWW-Authenticate": BEARER_CHALLENGE}
    # A fresh session: nothing from before signing in carries over.
    session.clear()
    login_user(user)
    log.info("signed in: %s (%s) from %s", user.name, user.role, request.remote_addr)
    return redirect(target, code=303)


@bp.post("/logout")
def logout():
    name = current_user.name if current_user.is_authenticated else None
    logout_user()
    session.clear()
    if name:
        log.info("signed out: %s", name)
    return redirect(url_for(".login"), code=303)


def _login_keys(name: str) -> tuple[str, str]:
    # The name is hashed into the key: whatever was typed (a password, by mistake)
    # never sits in Redis in the clear.
    digest = hashlib.sha256(users.normalise_name(name).encode()).hexdigest()[:32]
    return f"addr:{request.remote_addr or 'unknown'}", f"name:{digest}"


# -- who is asking -------------------------------------------------------------------


def _load_session_user(session_id: str) -> User | None:
    if "Authorization" in request.headers:
        return None  # the header decides (see the request loader)
    user = users.load_session_user(session_id)
    if user is not None:
        g.auth_method = "session"
    return user


def _load_token_user(req) -> User | None:
    header = req.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    user = None
    if scheme.lower() == "bearer" and token.strip():
        user = users.user_for_token(token.strip())
    if user is None:
        g.bad_credentials = True
        return None
    g.auth_method = "token"
    return user


# -- the gate ------------------------------------------------------------------------


def _gate() -> Response | tuple | None:
    if request.endpoint is None:
        return None  # no such route: the 404 or 405 answers for itself
    # Open endpoints never load the user: /healthz must answer with the database
    # down, whatever cookie the probe sends.
    if not _is_open() and not current_user.is_authenticated:
        return _refuse_anonymous()
    if request.method in _UNSAFE and _needs_csrf():
        csrf.protect()
    return None


def _is_open() -> bool:
    if request.endpoint in current_app.extensions["auth"]["open_endpoints"]:
        return True
    path = request.path
    return path.startswith(DASH_PREFIX) and path[len(DASH_PREFIX) :].startswith(
        _DASH_STATIC
    )


# Routes for programs outside the API's prefix (Prometheus scrapes /metrics).
_MACHINE_PATHS = frozenset(("/metrics",))
# Pages for people inside the API's prefix: sent to sign in like any page.
_API_PAGES = frozenset(("/api/docs",))


def _is_machine_route() -> bool:
    """The API, /metrics and Dash's JSON routes: callers are programs, not people."""
    path = request.path
    if path in _API_PAGES:
        return False
    if path.startswith("/api/") or path in _MACHINE_PATHS:
        return True
    rest = path[len(DASH_PREFIX) :] if path.startswith(DASH_PREFIX) else None
    return rest is not None and rest.startswith(("_dash-", "_reload-hash"))


def _refuse_anonymous():
    if _is_machine_route():
        return unauthorized()
    # Back to this page after signing in; a form post goes back to the home page.
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return redirect(url_for("auth.login", next=safe_next(target)), code=302)


def unauthorized():
    """401 in the contract's JSON shape (whatever the caller accepts: these routes
    speak JSON), with the challenge RFC 6750 asks for."""
    message = "sign in, or send an API token as 'Authorization: Bearer <token>'"
    body = {"error": {"code": "unauthorized", "message": message, "fields": {}}}
    challenge = BEARER_CHALLENGE
    if g.get("bad_credentials"):
        challenge += ', error="invalid_token"'
    return jsonify(body), 401, {"WWW-Authenticate": challenge}


def _needs_csrf() -> bool:
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return False
    # A bearer token is not sent by browsers on their own, so a forged cross-site
    # request cannot carry one. HTML forms are for browsers: they always need it.
    return not (g.get("auth_method") == "token" and _is_machine_route())


def _dash_csrf_cookie(response: Response) -> Response:
    """Give a signed-in Dash page the CSRF token its renderer sends back as
    X-CSRFToken on every callback."""
    if (
        g.get("auth_method") == "session"
        and request.method == "GET"
        and request.path.startswith(DASH_PREFIX)
        and response.mimetype == "text/html"
    ):
        response.set_cookie(
            DASH_CSRF_COOKIE,
            generate_csrf(),
            path=DASH_PREFIX,
            secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
            httponly=False,  # the renderer must read it; it is no credential
            samesite="Strict",
        )
    return response


def auth_init_app(app: Flask) -> None:
    """Sessions, tokens, the sign-in pages, the gate and LOGIN_RATE_LIMIT."""
    app.extensions["auth"] = {"open_endpoints": set(OPEN_ENDPOINTS)}
    app.extensions["login_limiter"] = RateLimit(
        str(app.config["LOGIN_RATE_LIMIT"]), redis_target(app.config), scope="login"
    )
    login_manager.init_app(app)
    login_manager.user_loader(_load_session_user)
    login_manager.request_loader(_load_token_user)
    csrf.init_app(app)
    # The gate decides where CSRF applies (Flask-WTF's own hook cannot tell a token
    # from a session, nor Dash's routes from the pages).
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(_gate)
    app.after_request(_dash_csrf_cookie)
    app.register_blueprint(bp)
