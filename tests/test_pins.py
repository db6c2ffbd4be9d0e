"""The dependencies whose internals the code uses stay below their next release
that may change them, and what is installed is inside every bound pyproject.toml
declares.

pyproject.toml names, beside each bounded dependency, the internals it is held
for. A version outside a bound fails here with the package, the version and the
bound, before any test of the code that would break in some less obvious way.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# The dependencies whose internals the code uses, and where.
BUILT_ON = {
    "gunicorn": "myapp/web/server.py",
    "dash": "myapp/dashboard/",
    "celery": "myapp/worker.py",
    "kombu": "myapp/runs/reaper.py",
    "celery-redbeat": "myapp/beat.py",
}

UPPER = frozenset(("<", "<=", "==", "===", "~="))


def declared() -> dict[str, list[Requirement]]:
    """Every requirement of pyproject.toml (runtime and extras), by package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts += extra
    found: dict[str, list[Requirement]] = {}
    for requirement in map(Requirement, texts):
        found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_every_package_we_build_on_has_an_upper_bound():
    requirements = declared()
    missing = [
        f"{name} ({where}): {', '.join(map(str, requirements.get(name, []))) or '-'}"
        for name, where in BUILT_ON.items()
        if not requirements.get(name)
        or not all(
            any(s.operator in UPPER for s in r.specifier) for r in requirements[name]
        )
    ]
    assert not missing, (
        "these dependencies' internals are used, but pyproject.toml does not bound "
        "every requirement of them from above: " + "; ".join(missing)
    )


def test_installed_versions_are_inside_the_declared_bounds():
    outside = []
    for name, requirements in declared().items():
        version = installed_version(name)
        if version is None:
            continue  # an extra this environment does not install (ops, bench)
        for requirement in requirements:
            if requirement.marker and not requirement.marker.evaluate():
                continue
            if not requirement.specifier.contains(version, prereleases=True):
                outside.append(f"{name} {version} is installed, outside {requirement}")
    assert not outside, (
        "installed versions outside pyproject.toml's bounds (the code may rely on "
        "internals they changed; `make install` installs the lock): "
        + "; ".join(outside)
    )


def test_the_packages_we_build_on_are_installed():
    absent = [name for name in BUILT_ON if installed_version(name) is None]
    assert not absent, f"not installed: {absent}"
