"""The settings table: every environment variable myapp or its processes read,
declared once with its name, type, default, bounds and meaning.

Parsing the environment, the defaults, the range checks, the list of names tests and
benchmarks clear and `.env.example` (`make env-example`) all come from `SETTINGS`.
The app's config is built from it when the factory runs (`myapp.config`); the
processes around the app (gunicorn.conf.py, the Celery worker program, `make run`)
read their own settings with `read_settings`, without building an app.

Adding a setting is one line in `SETTINGS`, e.g.::

    Setting("DATA_MAX_ROWS", int, 1_000_000, "Rows the data set may hold.", minimum=1),

then `make env-example`; a test fails until `.env.example` matches the table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One environment variable.

    `kind` is int or str. `default` is what the app uses when the variable is unset
    (None: unset, or filled in by `finalize`). `app=False` marks variables read by
    the processes around the app (gunicorn.conf.py, the worker program, `make run`,
    through `read_settings`), which are declared here so they are documented,
    cleared and range-checked the same way but never copied into the Flask config.
    `example` is the value shown in `.env.example` when it must differ from the
    default.
    """

    name: str
    kind: type
    default: int | str | None
    meaning: str
    minimum: int | None = None
    maximum: int | None = None
    app: bool = True
    example: str | None = None

    def parse(self, raw: str) -> int | str:
        """The value of `raw` for this setting; RuntimeError names the variable."""
        if self.kind is not int:
            return raw
        # int() also takes "1_000" and non-ASCII digits; settings are plain numbers.
        text = raw.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise RuntimeError(f"{self.name} must be an integer, got {raw!r}")
        value = int(text)
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """Refuse a number out of bounds, with a message naming the variable."""
        if self.kind is not int or value is None:
            return
        if self.minimum is not None and value < self.minimum:
            raise RuntimeError(
                f"{self.name} must be at least {self.minimum}, got {value}"
            )
        if self.maximum is not None and value > self.maximum:
            raise RuntimeError(
                f"{self.name} must be at most {self.maximum}, got {value}"
            )


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "REDIS_URL",
        str,
        "redis://127.0.0.1:6379/0",
        "Broker, result backend and data store. Unset under `make run`: an embedded "
        "Redis, which `flask` commands of the checkout find in instance/devstack.env.",
        example="",
    ),
    Setting(
        "REDIS_SENTINELS",
        str,
        None,
        "host:port,host:port,… of Redis Sentinels. When set, every Redis client "
        "(broker, results, Dash, data set, limits, beat, readiness, metrics) finds the "
        "primary of REDIS_SENTINEL_MASTER through them and follows a failover; "
        "REDIS_URL then gives only the database number and password.",
    ),
    Setting(
        "REDIS_SENTINEL_MASTER",
        str,
        "mymaster",
        "The name the sentinels monitor the primary under (REDIS_SENTINELS).",
    ),
    Setting(
        "DATABASE_URL",
        str,
        None,
        "Run history. Default: SQLite under instance/. `postgres://` URLs are "
        "accepted.",
        # Stored as SQLALCHEMY_DATABASE_URI, see from_environ.
        app=False,
    ),
    Setting(
        "SECRET_KEY",
        str,
        None,
        "Sessions, CSRF, Dash's signed job handles. In development: made once and "
        "kept in instance/secret_key; required (and shared by every web process) "
        "when APP_ENV is not development.",
    ),
    Setting("APP_ENV", str, "development", "development, or anything else for HTTPS."),
    Setting(
        "ALLOWED_HOSTS",
        str,
        None,
        "Host names the site answers to, comma-separated (.example.com: every "
        "subdomain; ports ignored); other Host headers get 400. Any host in "
        "development when empty; required when APP_ENV is not development.",
    ),
    Setting(
        "INSTANCE_PATH",
        str,
        "instance",
        "Where the SQLite file and the embedded Redis data live.",
        # Read by create_app before the config exists, and by `make run`.
        app=False,
    ),
    Setting("PORT", int, 8000, "Port gunicorn listens on.", 1, 65535, app=False),
    Setting(
        "HOST",
        str,
        "127.0.0.1",
        "Address `make run` serves on (0.0.0.0: every interface). The Procfile's web "
        "listens on 0.0.0.0 for platforms and ignores it.",
        app=False,
    ),
    Setting("MAX_ROWS_PER_RUN", int, 100_000, "Rows one run may write.", minimum=1),
    Setting(
        "TASK_MODULES",
        str,
        "",
        "Comma-separated modules whose @task functions join the built-in tasks "
        "(docs/tasks.md). Every process (web, worker, beat, flask) imports them.",
    ),
    Setting(
        "START_RATE_LIMIT",
        str,
        "60/minute",
        "Run starts per user (per address for a caller nobody signed in), e.g. "
        "60/minute; `off` disables the limit.",
    ),
    Setting(
        "LOGIN_RATE_LIMIT",
        str,
        "10/minute",
        "Sign-in attempts per client address and per user name, e.g. 10/minute.",
    ),
    Setting(
        "MAX_ACTIVE_RUNS",
        int,
        100,
        "Runs pending or started at once; beyond it starts get 429.",
        minimum=1,
    ),
    Setting(
        "MAX_ACTIVE_RUNS_PER_TASK",
        int,
        None,
        "Active runs of one task at once; beyond it its starts get 429. Default: "
        "four fifths of MAX_ACTIVE_RUNS, so a fifth of the slots stay free for other "
        "tasks.",
        minimum=1,
    ),
    Setting(
        "SCHEDULE_SECONDS",
        int,
        90,
        "Interval of the generate-data schedule when the first migration creates it.",
        minimum=1,
    ),
    Setting(
        "SCHEDULE_MIN_SECONDS",
        int,
        10,
        "The shortest interval a schedule may be saved with (every_s).",
        minimum=1,
    ),
    Setting(
        "PRUNE_AFTER_DAYS",
        int,
        30,
        "prune_runs, scheduled daily, deletes finished runs older than this.",
        minimum=1,
    ),
    Setting(
        "RUN_LOG_MAX_LINES",
        int,
        1000,
        "Log lines kept per run (ctx.log); later ones are counted as dropped.",
        minimum=0,
    ),
    Setting(
        "RUN_WAITERS_PER_PROCESS",
        int,
        2,
        "Requests of one web process that may wait on a run at once (?wait=); the "
        "rest answer at once. Keep it below WEB_THREADS.",
        minimum=1,
    ),
    Setting(
        "RUN_LEASE_SECONDS",
        int,
        30,
        "A STARTED run with no heartbeat for this long may be taken over by a "
        "redelivery.",
        minimum=1,
    ),
    Setting(
        "DB_LOCK_TIMEOUT_MS",
        int,
        5000,
        "PostgreSQL: a worker's claim and the reaper give up on a locked run row "
        "after this long (asked again later) instead of waiting behind a session "
        "the server has not dropped yet.",
        minimum=1,
    ),
    Setting(
        "DB_IDLE_TRANSACTION_SECONDS",
        int,
        60,
        "PostgreSQL: the server ends a session idle inside a transaction this long "
        "(a host cut off mid-transaction), releasing its row locks. Above any "
        "transaction we hold open on purpose.",
        minimum=1,
    ),
    Setting(
        "DISPATCH_GRACE_SECONDS",
        int,
        10,
        "The outbox sweeper leaves PENDING runs younger than this to their first "
        "message.",
        minimum=0,
    ),
    Setting(
        "MAX_ATTEMPTS",
        int,
        3,
        "The reaper: a run whose worker is gone is sent again until claimed this "
        "many times.",
        minimum=1,
    ),
    Setting(
        "REDISPATCH_SECONDS",
        int,
        120,
        "A sent run still PENDING/RETRY this long with no message queued is sent "
        "again.",
        minimum=1,
    ),
    Setting(
        "REAPER_SLACK_SECONDS",
        int,
        60,
        "A run STARTED longer than Celery's hard time limit plus this ends FAILURE.",
        minimum=0,
    ),
    Setting(
        "MAX_CONTENT_LENGTH",
        int,
        64 * 1024,
        "Largest request body, in bytes.",
        minimum=1,
    ),
    Setting(
        "DATA_PREFIX",
        str,
        "myapp:data",
        "Prefix of every Redis key of the data set (their Redis Cluster hash tag).",
    ),
    Setting(
        "DATA_REDIS_URL",
        str,
        None,
        "The data set's own Redis; unset: REDIS_URL's. Only this one may be allowed "
        "to evict (the broker's must not).",
    ),
    Setting(
        "DATA_MAX_ROWS",
        int,
        2_000_000,
        "Retention: beyond this many rows (about 140 bytes of Redis each) the "
        "maintenance task drops the oldest runs, whole; 0 keeps every row. At least "
        "MAX_ROWS_PER_RUN.",
        minimum=0,
    ),
    Setting("WEB_CONCURRENCY", int, 2, "gunicorn worker processes.", 1, app=False),
    Setting("WEB_THREADS", int, 4, "Threads per gunicorn worker.", 1, app=False),
    Setting(
        "WEB_TIMEOUT",
        int,
        30,
        "gunicorn restarts a request slower than this.",
        1,
        app=False,
    ),
    Setting(
        "WEB_READ_TIMEOUT",
        int,
        20,
        "Seconds a request has to arrive whole (else 408), and a client to make "
        "progress reading its response; the web worker reads requests before any "
        "thread sees them.",
        1,
        app=False,
    ),
    Setting(
        "WORKER_CONCURRENCY",
        int,
        2,
        "Pool processes of the Celery worker.",
        1,
        app=False,
    ),
    Setting(
        "WORKER_QUEUES",
        str,
        "celery,maintenance",
        "Queues this worker consumes, comma-separated.",
        app=False,
    ),
    Setting(
        "MAINTENANCE_NAME",
        str,
        "maintenance@%h",
        "Node name of the maintenance worker; unique per worker on one host.",
        app=False,
    ),
    Setting(
        "WORKER_NAME",
        str,
        "celery@%h",
        "Worker node name; unique per worker on one host.",
        app=False,
    ),
    Setting(
        "WORKER_SHUTDOWN_SECONDS",
        int,
        20,
        "On SIGTERM, how long running tasks may finish before they are requeued.",
        minimum=0,
        app=False,
    ),
    Setting(
        "METRICS_PUBLIC",
        int,
        0,
        "1: GET /metrics answers anonymous callers too (otherwise viewer tokens only).",
        0,
        1,
    ),
    Setting(
        "METRICS_PORT",
        int,
        None,
        "A worker serves its host's /metrics figures on this port (for hosts without "
        "a web process); unset: none.",
        1,
        65535,
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        str,
        "instance/metrics",
        "Read by prometheus_client: where every process of this host writes its "
        "counters for /metrics (the Procfile's default; `make run` empties it at each "
        "start). Never set it empty.",
        app=False,
    ),
)

# Every variable above: what tests and benchmarks clear so a developer's shell
# cannot change what they measure.
ENVIRONMENT_NAMES: tuple[str, ...] = tuple(s.name for s in SETTINGS)


def read_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every setting: its value in `environ` (non-empty), parsed and range-checked,
    else the table's default. For the processes around the app (gunicorn.conf.py,
    the worker program, `make run`), which must not build an app to know them."""
    return {
        s.name: s.parse(environ[s.name]) if environ.get(s.name) else s.default
        for s in SETTINGS
    }


def env_example() -> str:
    """The text of `.env.example`: every setting with its default and meaning."""
    lines = [
        "# Every setting myapp reads, with its default. Copy to .env to change one"
        " locally.",
        "# Generated from the table in myapp/settings.py by `make env-example`.",
    ]
    for setting in SETTINGS:
        lines.append("")
        lines.extend(
            textwrap.wrap(
                setting.meaning, 88, initial_indent="# ", subsequent_indent="# "
            )
        )
        if setting.example is not None:
            shown = setting.example
        elif setting.default is None:
            shown = ""
        else:
            shown = str(setting.default)
        lines.append(f"{setting.name}={shown}")
    return "\n".join(lines) + "\n"
