"""The environments our subprocesses start in: nothing from a developer's shell,
this checkout on the import path, and the settings of a test's app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from myapp.config import ENVIRONMENT_NAMES, SETTINGS

if TYPE_CHECKING:
    from flask import Flask

# The repository: tests/ and bench/ run from a checkout, and so do the processes
# they start (cwd, PYTHONPATH, the Procfile).
ROOT = Path(__file__).resolve().parents[2]


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any myapp setting or FLASK_* variable (a
    developer's shell must not change what a test or benchmark sees), importing this
    checkout and finding this interpreter's tools first on PATH; then `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ENVIRONMENT_NAMES and not k.startswith("FLASK_")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def app_environ(app: Flask) -> dict[str, str]:
    """The environment under which `wsgi.py` builds the same app as `app`: every
    declared setting from its config, its database and its instance path."""
    env = {
        s.name: str(app.config[s.name])
        for s in SETTINGS
        if s.app and app.config.get(s.name) is not None
    }
    env["DATABASE_URL"] = app.config["SQLALCHEMY_DATABASE_URI"]
    env["INSTANCE_PATH"] = app.instance_path
    return clean_environ(**env)
