"""Plain helpers for tests/, tests/faults/ and bench/: real processes (a Redis
server, Sentinels, gunicorn, Celery workers and beat, `make run`'s launcher), the
network between them, browsers, clients and waiting.

They live beside the tests, not in the `myapp` package: they need the source tree
(the Procfile, wsgi.py, this checkout on PYTHONPATH), and the wheel ships the app
alone. Tests import them as `tests.support` (pytest runs from the repository root,
`python -m pytest`); so does bench/ (`python -m bench`, from the root too). The
processes start exactly as they ship: Redis through `myapp.devserver.start_redis`
(the settings of `make run`), gunicorn and the Celery worker from the Procfile's
command lines, each program run as `<this python> -m program` from this checkout.

Nothing here binds or contacts anything but 127.0.0.1. Pytest fixtures stay in the
conftest files; these are plain helpers they and the benchmarks build on.
"""

from tests.support.basics import free_port, wait_for
from tests.support.browser import BROWSER_PASSWORD, chrome_options, sign_in
from tests.support.clients import TokenClient, as_user
from tests.support.environ import ROOT, app_environ, clean_environ
from tests.support.faults import FaultProxy, Host
from tests.support.processes import Beat, Launcher, Service, Web, Worker
from tests.support.procfile import procfile_command
from tests.support.redis_servers import RedisServer, SentinelServer
from tests.support.runs import (
    StartStream,
    add_schedule,
    pending_run,
    settle,
    sweep,
    wait_for_state,
)

__all__ = [
    "BROWSER_PASSWORD",
    "ROOT",
    "Beat",
    "FaultProxy",
    "Host",
    "Launcher",
    "RedisServer",
    "SentinelServer",
    "Service",
    "StartStream",
    "TokenClient",
    "Web",
    "Worker",
    "add_schedule",
    "app_environ",
    "as_user",
    "chrome_options",
    "clean_environ",
    "free_port",
    "pending_run",
    "procfile_command",
    "settle",
    "sign_in",
    "sweep",
    "wait_for",
    "wait_for_state",
]
