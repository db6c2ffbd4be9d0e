"""Soak: mixed load against `make run`'s stack for a while; does anything leak or fail?

    .venv/bin/python -m bench.soak --minutes 10

Starts the stack exactly as `make run` does (`python -m myapp.devserver`: migrations,
then the Procfile's web, worker, maintenance and beat under honcho) on free ports,
on a Redis started with the shipped settings, in a throwaway instance directory.
Then a few client threads mix: run starts, status polls, cancels, run-history and
data (grid) pages, and Dash updates (the cheap callbacks the pages poll). It reports
the 5xx count, latency percentiles per kind, the RSS of each process kind and the
Redis key count at start and end, runs accepted vs finished once the load stopped,
and the server's own counts from /metrics.

Who the clients are is one place, `Clients`: before the load, an operator is created
with the `flask users` commands; API calls carry its token (`Authorization: Bearer`,
or `--token`'s), and the browser client signs in at /login as a person does and
sends Dash's CSRF token from its cookie, as dash-renderer does.

Everything is bounded: requests per thread, minutes, the drain wait. Only
127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.stack import Stack
from tests.support import ROOT, Launcher, clean_environ

# Share of each kind of request in the mix.
MIX = (
    ("start", 0.08),
    ("status", 0.34),
    ("cancel", 0.03),
    ("runs", 0.1),
    ("data", 0.25),
    ("dash", 0.2),
)
# Kinds a browser sends (its session cookie); the others are API calls.
BROWSER_KINDS = frozenset({"dash"})
SOAK_USER = "soak-operator"
# The cookie Dash's pages set and dash-renderer sends back as X-CSRFToken.
DASH_CSRF_COOKIE = "_csrf_token"
MAX_REQUESTS_PER_THREAD = 200_000


def rss_mib(launcher: Launcher) -> dict[str, float]:
    """Resident memory of each Procfile process kind, in MiB."""
    result = {}
    for role, processes in launcher.roles().items():
        total = 0
        for process in processes:
            with suppress(psutil.Error):
                total += process.memory_info().rss
        result[role] = round(total / 2**20, 1)
    return result


@dataclass
class Clients:
    """Who sends the load. API calls carry `api_headers` (a bearer token; the
    API wants one); browser requests (Dash) go through `browser`, which keeps
    cookies, so a session made by signing in is sent with every one of them."""

    api_headers: dict[str, str] = field(default_factory=dict)
    cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def browser_headers(self) -> dict[str, str]:
        """What a signed-in Dash page sends: the CSRF token from its cookie."""
        for cookie in self.cookies:
            if cookie.name == DASH_CSRF_COOKIE:
                return {"X-CSRFToken": cookie.value or ""}
        return {}

    def sign_in(self, base: str, name: str, password: str) -> None:
        """The browser signs in at /login (form and CSRF token), then opens Dash."""
        with self.browser.open(base + "/login", timeout=30) as response:
            page = response.read().decode()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if found is None:
            raise SystemExit("soak: no CSRF token on /login")
        form = urllib.parse.urlencode(
            {"username": name, "password": password, "csrf_token": found.group(1)}
        ).encode()
        with self.browser.open(base + "/login", data=form, timeout=30) as response:
            if "/login" in response.url:
                raise SystemExit("soak: the browser could not sign in")
        with self.browser.open(base + "/dash/", timeout=30):
            pass  # sets the cookie holding Dash's CSRF token


def sign_in_clients(env: dict[str, str], base: str, token: str | None) -> Clients:
    """An operator made with the `flask users` commands (as an admin would), its
    API token on the API calls and its password on the browser."""
    users = [sys.executable, "-m", "flask", "--app", "wsgi", "users"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*users, *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"soak: flask users {args[0]} failed:\n{done.stderr}")
        return done.stdout

    created = run("create", SOAK_USER, "--role", "operator")
    password = re.search(r"^password: (\S+)$", created, re.MULTILINE)
    if password is None:
        raise SystemExit("soak: users create printed no password")
    token = token or run("token", SOAK_USER, "--label", "soak").strip().splitlines()[-1]
    clients = Clients(api_headers={"Authorization": f"Bearer {token}"})
    clients.sign_in(base, SOAK_USER, password.group(1))
    return clients


class Load:
    """Client threads; each request's kind, status and latency are recorded."""

    def __init__(
        self,
        base: str,
        seconds: float,
        threads: int,
        think: float,
        clients: Clients | None = None,
    ):
        self.base = base
        self.clients = clients or Clients()
        self.until = time.monotonic() + seconds
        self.threads = threads
        self.think = think
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.errors: list[str] = []
        self.run_ids: list[str] = []
        self.dash = DashPoller(base)

    def request(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        browser = kind in BROWSER_KINDS
        headers = (
            self.clients.browser_headers() if browser else self.clients.api_headers
        )
        for name, value in headers.items():
            req.add_header(name, value)
        opener = self.clients.browser if browser else urllib.request.build_opener()
        began = time.perf_counter()
        try:
            with opener.open(req, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            status, payload = 599, str(exc).encode()  # no answer at all counts as 5xx
        took = time.perf_counter() - began
        with self.lock:
            self.latency[kind].append(took)
            self.statuses[kind][status] += 1
            if status >= 500 and len(self.errors) < 20:
                self.errors.append(f"{kind} {path} -> {status}: {payload[:200]!r}")
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, None

    def one(self, rng: random.Random) -> None:
        kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "start":
            body = {"rows": rng.randint(1, 200), "seconds": rng.choice((0, 0.5, 1, 2))}
            status, run = self.request(
                kind, "POST", "/api/tasks/generate_data/runs", body
            )
            if status == 202:
                with self.lock:
                    self.run_ids.append(run["id"])
        elif kind == "status":
            with self.lock:
                run_id = rng.choice(self.run_ids) if self.run_ids else None
            if run_id is not None:
                self.request(kind, "GET", f"/api/runs/{run_id}")
        elif kind == "cancel":
            # One of the latest starts: often still running, sometimes just finished
            # (409), both answers a user gets.
            with self.lock:
                recent = self.run_ids[-20:]
            if recent:
                self.request(kind, "DELETE", f"/api/runs/{rng.choice(recent)}")
        elif kind == "runs":
            self.request(kind, "GET", "/api/runs?limit=50")
        elif kind == "data":
            sort = rng.choice(("created_at", "value"))
            offset = rng.randint(0, 2000)
            self.request(
                kind, "GET", f"/api/data?limit=100&offset={offset}&sort={sort}"
            )
        elif kind == "dash":
            self.dash.poll(self)

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(MAX_REQUESTS_PER_THREAD):
            if time.monotonic() >= self.until:
                return
            self.one(rng)
            time.sleep(self.think)

    def run(self) -> None:
        threads = [
            threading.Thread(target=self.worker, args=(i,), daemon=True)
            for i in range(self.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


class DashPoller:
    """Sends the updates a Dash page sends while it polls: a callback whose inputs
    are all in the layout, found in `_dash-dependencies` (no browser needed)."""

    WANTED = ("data-total", "app-status", "schedule-info", "run-progress")

    def __init__(self, base: str):
        self.base = base
        self.bodies: list[dict[str, Any]] | None = None

    def discover(self, load: Load) -> list[dict[str, Any]]:
        status, deps = load.request("dash", "GET", "/dash/_dash-dependencies")
        bodies = []
        for dep in deps if status == 200 and isinstance(deps, list) else []:
            if not any(w in dep["output"] for w in self.WANTED):
                continue
            if dep.get("background") or not dep.get("inputs"):
                continue
            if any(
                "{" in str(x["id"]) for x in dep["inputs"] + dep.get("state", [])
            ):  # pattern-matching ids need a rendered page
                continue
            bodies.append(
                {
                    "output": dep["output"],
                    "outputs": _outputs(dep["output"]),
                    "inputs": [dict(x, value=None) for x in dep["inputs"]],
                    "state": [dict(x, value=None) for x in dep.get("state", [])],
                    "changedPropIds": [
                        f"{x['id']}.{x['property']}" for x in dep["inputs"][:1]
                    ],
                }
            )
        return bodies

    def poll(self, load: Load) -> None:
        if self.bodies is None:
            self.bodies = self.discover(load)
        if self.bodies:
            body = random.choice(self.bodies)
            load.request("dash", "POST", "/dash/_dash-update-component", body)


def _outputs(output: str) -> Any:
    def one(spec: str) -> dict[str, str]:
        ident, prop = spec.rsplit(".", 1)
        return {"id": ident, "property": prop}

    if output.startswith(".."):
        return [one(s) for s in output.strip(".").split("...")]
    return one(output)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def drain(load: Load, seconds: float) -> dict[str, int]:
    """Wait (bounded) for every accepted run to finish; count them by state."""
    deadline = time.monotonic() + seconds
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        states = defaultdict(int)
        for run_id in load.run_ids:
            _, run = load.request("drain", "GET", f"/api/runs/{run_id}")
            states[(run or {}).get("state", "UNKNOWN")] += 1
        if all(s in ("SUCCESS", "FAILURE", "REVOKED") for s in states):
            break
        time.sleep(2)
    return dict(states)


def server_counts(load: Load) -> dict[str, Any]:
    """The server's own view from /metrics: runs finished by state, HTTP 5xx."""
    req = urllib.request.Request(
        load.base + "/metrics", headers=load.clients.api_headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return {"error": f"/metrics: {exc}"}
    finished: dict[str, float] = defaultdict(float)
    errors = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "myapp_runs_finished_total":
                finished[sample.labels["state"]] += sample.value
            elif sample.name == "myapp_http_requests_total" and sample.labels[
                "status"
            ].startswith("5"):
                errors += sample.value
    return {"runs_finished": dict(finished), "http_5xx": errors}


_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}|\d+"
)


def key_census(client) -> dict[str, str]:
    """Redis keys grouped by shape (ids and numbers as *), each "count (n without
    expiry)": what grew, and whether it goes away by itself. SCAN, bounded."""
    shapes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, key in enumerate(client.scan_iter(count=500)):
        if i >= 100_000:
            break
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        shape = shapes[_ID.sub("*", name)]
        shape[0] += 1
        if client.ttl(key) == -1:
            shape[1] += 1
    return {
        k: f"{n} ({forever} without expiry)"
        for k, (n, forever) in sorted(shapes.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--think", type=float, default=0.02, help="pause per request")
    parser.add_argument("--drain-seconds", type=float, default=180)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--token",
        default=os.environ.get("SOAK_TOKEN"),
        help="API token sent as Authorization: Bearer (default: $SOAK_TOKEN)",
    )
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="myapp-soak-") as tmp,
        Stack(Path(tmp)) as stack,
    ):
        database = os.environ.get("SOAK_DATABASE_URL") or stack.database_url
        # The limiter stays on (it is part of what soaks), high enough that the
        # load is not mostly 429s.
        with stack.launcher(
            DATABASE_URL=database,
            START_RATE_LIMIT="100000/minute",
        ) as launcher:
            keys = stack.redis()
            stack_env = clean_environ(
                REDIS_URL=stack.redis_url(),
                DATABASE_URL=database,
                INSTANCE_PATH=str(stack.dir),
            )
            clients = sign_in_clients(stack_env, launcher.url, args.token)
            # Warm up (imports, first Dash render) before the "start" snapshot.
            warm = Load(launcher.url, 5, 1, 0.05, clients)
            warm.run()
            start = {
                "rss_mib": rss_mib(launcher),
                "redis_keys": keys.dbsize(),
                "redis_key_shapes": key_census(keys),
            }
            load = Load(
                launcher.url, args.minutes * 60, args.threads, args.think, clients
            )
            load.run_ids = list(warm.run_ids)
            began = time.monotonic()
            load.run()
            elapsed = time.monotonic() - began
            states = drain(load, args.drain_seconds)
            end = {
                "rss_mib": rss_mib(launcher),
                "redis_keys": keys.dbsize(),
                "redis_key_shapes": key_census(keys),
            }
            memory = keys.info("memory")["used_memory_human"]
            server = server_counts(load)

    report = {
        "minutes": round(elapsed / 60, 2),
        "requests": sum(len(v) for k, v in load.latency.items() if k != "drain"),
        "5xx": sum(
            n
            for kind, counts in load.statuses.items()
            for status, n in counts.items()
            if status >= 500
        ),
        "statuses": {k: dict(v) for k, v in load.statuses.items() if k != "drain"},
        "latency_ms": {
            kind: {
                "p50": round(percentile(v, 50) * 1000, 1),
                "p95": round(percentile(v, 95) * 1000, 1),
                "max": round(max(v) * 1000, 1),
            }
            for kind, v in load.latency.items()
            if v and kind != "drain"
        },
        "p95_ms_all": round(
            percentile(
                [x for k, v in load.latency.items() if k != "drain" for x in v], 95
            )
            * 1000,
            1,
        ),
        "runs_accepted": len(load.run_ids),
        "runs_after_drain": states,
        "start": start,
        "end": end,
        "redis_used_memory_end": memory,
        "server_metrics": server,
        "errors": load.errors,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    finished = ("SUCCESS", "FAILURE", "REVOKED")
    unfinished = sum(n for s, n in states.items() if s not in finished)
    return 1 if report["5xx"] or unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
