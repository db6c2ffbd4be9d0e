"""The install is the lock: what runs here is exactly what uv.lock names, dash and
kombu stay on the minors whose internals the code reads, and the `flask` command
reads the same `.env` as `make run`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from myapp.devserver import read_env

ROOT = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, set[str]]:
    """Every version the lock names per package: a universal lock may pick another
    version for another Python (its resolution markers)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    found: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "version" in package and package["name"] != "myapp":
            name = canonicalize_name(package["name"])
            found.setdefault(name, set()).add(package["version"])
    return found


def installed_versions() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
    }


def test_every_installed_package_is_the_locked_version():
    locked, installed = locked_versions(), installed_versions()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # What `make test` installs: the runtime and the dev and test extras.
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["dev"],
        *project["optional-dependencies"]["test"],
    ]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in installed, f"{name} is not installed"
        assert name in locked, f"{name} is not in uv.lock: run `make lock`"
    drift = {
        name: (version, locked[name])
        for name, version in installed.items()
        if name in locked and version not in locked[name]
    }
    assert not drift, f"installed vs locked: {drift}"


def test_dash_and_kombu_stay_on_the_minors_the_code_reads():
    locked = locked_versions()
    assert all(v.startswith("4.4.") for v in locked["dash"])
    assert all(v.startswith("5.7.") for v in locked["kombu"])


def test_flask_command_reads_dot_env(tmp_path):
    (tmp_path / ".env").write_text(
        "MAX_ROWS_PER_RUN=77\nREDIS_URL=redis://127.0.0.1:1/0\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MAX_ROWS_PER_RUN", "REDIS_URL") and not k.startswith("FLASK_")
    }
    env.update(PYTHONPATH=str(ROOT), INSTANCE_PATH=str(tmp_path / "instance"))
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "tasks", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 to 77" in result.stdout


def test_make_run_reads_dot_env_the_same_way(tmp_path):
    dot_env = tmp_path / ".env"
    dot_env.write_text("MAX_ROWS_PER_RUN=77\nPORT=9000\nEMPTY=\n")
    env = read_env(dot_env, {"PORT": "8123"})
    # The environment wins over the file, as with the flask command.
    assert env["PORT"] == "8123"
    assert env["MAX_ROWS_PER_RUN"] == "77"
    assert read_env(tmp_path / "missing", {"A": "1"}) == {"A": "1"}
