"""What `make run` and the `flask` commands of one checkout share, with nothing
exported by hand (development only).

- `instance/devstack.env`: written by the launcher (`myapp.devserver`) while it runs:
  the REDIS_URL it chose (its embedded Redis moves to a random port when 6379 is
  taken) and its pid. The config reads it when REDIS_URL is unset, so a `flask`
  command in another terminal talks to the running app's Redis, not to whatever
  answers on 6379. It stays when the launcher stops (or is killed): a command that
  needs Redis then says the app is not running (`require_redis`) instead of
  quietly using another Redis.
- `instance/secret_key`: the development SECRET_KEY, made once (mode 0600) so
  sessions and Dash's signed job handles survive a restart of `make run`.

Production reads neither: there REDIS_URL has its default or the environment's, and
SECRET_KEY is required.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import redis
from dotenv import dotenv_values

LAUNCHER_FILE = "devstack.env"
SECRET_KEY_FILE = "secret_key"


class StackUnreachable(RuntimeError):
    """Redis does not answer; `str(exc)` is one line saying which and why."""


def launcher_file(instance_path: str | Path) -> Path:
    return Path(instance_path) / LAUNCHER_FILE


def write_launcher_file(instance_path: str | Path, redis_url: str) -> Path:
    """Record the launcher's choices for the commands of this checkout. 0600: the
    URL may carry a Redis password."""
    path = launcher_file(instance_path)
    text = f"REDIS_URL={redis_url}\nLAUNCHER_PID={os.getpid()}\n"
    _write_private(path, text, replace=True)
    return path


def read_launcher_file(instance_path: str | Path) -> dict[str, str]:
    path = launcher_file(instance_path)
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v}


def secret_key(instance_path: str | Path) -> str:
    """The checkout's development SECRET_KEY: read, or made once. Every process of
    `make run` may ask at the same moment, so the file appears whole or not at all
    (written aside, then linked into place; the loser reads the winner's)."""
    path = Path(instance_path) / SECRET_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    _write_private(path, secrets.token_hex(32), replace=False)
    return path.read_text().strip()


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    try:
        if replace:
            os.replace(aside, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()


def apply(config: dict[str, Any], instance_path: str, given: dict[str, Any]) -> None:
    """Development: fill REDIS_URL from the running launcher's file and SECRET_KEY
    from the checkout's key file, for whichever of them nobody gave."""
    if config["APP_ENV"] != "development":
        return
    if not given.get("REDIS_URL"):
        url = read_launcher_file(instance_path).get("REDIS_URL")
        if url:
            config["REDIS_URL"] = url
            config["REDIS_URL_FROM"] = str(launcher_file(instance_path))
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = secret_key(instance_path)


def require_redis(config: dict[str, Any]) -> None:
    """Raise StackUnreachable, in one line, when REDIS_URL does not answer now:
    better than a command that waits on a broker nobody serves."""
    url = config["REDIS_URL"]
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StackUnreachable(_unreachable(config, _reason(exc))) from None
    finally:
        client.close()
    source = config.get("REDIS_URL_FROM")
    if source and not _launcher_alive(Path(source).parent):
        # Something answers on a port the stopped launcher's Redis had: not ours.
        raise StackUnreachable(_unreachable(config, "its launcher has stopped"))


def _unreachable(config: dict[str, Any], reason: str) -> str:
    source = config.get("REDIS_URL_FROM")
    if source:
        return (
            f"the app is not running (REDIS_URL from {source}: {reason}); "
            "start it with `make run`"
        )
    return (
        f"cannot reach Redis at {_safe(config['REDIS_URL'])} ({reason}): `make run` "
        "is not running here, and REDIS_URL names no other Redis"
    )


def _launcher_alive(instance_path: Path) -> bool:
    pid = read_launcher_file(instance_path).get("LAUNCHER_PID", "")
    if not pid.isdigit():
        return True  # written by hand: trust it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def _reason(exc: redis.RedisError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "timeout" in text or "timed out" in text:
        return "no answer within 2 s"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _safe(url: str) -> str:
    """The URL without its password, for a message."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"
