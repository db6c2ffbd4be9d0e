"""The install is the lock: what runs here is exactly what uv.lock names, dash and
kombu stay on the minors whose internals the code reads, the wheel holds the app
alone, and the `flask` command reads the same `.env` as `make run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
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


# Left out of the copy the wheel is built from: tools, caches and local state.
NOT_SOURCE = {
    ".git",
    ".venv",
    ".tools",
    "instance",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
}


def test_the_wheel_holds_the_app_alone(tmp_path):
    """What a production image installs: every file of the `myapp` package (modules,
    templates, static files, Dash assets, Lua scripts) and nothing else, no tests or
    benchmarks."""
    source = tmp_path / "source"

    def ignore(directory: str, names: list[str]) -> set[str]:
        local = NOT_SOURCE if Path(directory) == ROOT else set()
        return {
            n
            for n in names
            if n in local or n == "__pycache__" or n.endswith((".egg-info", ".pyc"))
        }

    # Built from a copy: the build writes build/ and egg-info beside the sources.
    shutil.copytree(ROOT, source, ignore=ignore)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta;"
            "print(build_meta.build_wheel(sys.argv[1]))",
            str(tmp_path / "dist"),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheel = tmp_path / "dist" / result.stdout.split()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if not n.endswith("/")}
    outside = sorted(n for n in shipped if n.split("/")[0] != "myapp")
    assert [n for n in outside if ".dist-info/" not in n] == [], outside
    package = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "myapp").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    inside = shipped - set(outside)
    assert sorted(package - inside) == [], "files of myapp/ missing from the wheel"
    assert sorted(inside - package) == [], "files in the wheel that myapp/ lacks"


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
