"""The Procfile's command lines, as the processes of tests and benchmarks run them."""

from __future__ import annotations

import re
import shlex
import sys

from tests.support.environ import ROOT


def procfile_command(name: str, env: dict[str, str]) -> list[str]:
    """The Procfile's command line for a process, `${VAR:-default}` expanded from
    `env`, with its program run as `python -m program` from this interpreter.
    Leading variable assignments (the worker's REMAP_SIGTERM) are moved into `env`,
    as the shell would put them in the program's environment."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            break
    else:
        raise RuntimeError(f"Procfile has no {name!r} process")

    def expand(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or match.group(2) or ""

    argv = shlex.split(re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", expand, command))
    while argv and re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0]):
        key, _, value = argv.pop(0).partition("=")
        env[key] = value
    return [sys.executable, "-m", argv[0], *argv[1:]]
