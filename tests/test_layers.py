"""The package's layers, read from its imports: the Flask edge (`myapp.web`) and the
Dash edge (`myapp.dashboard`) share only what lies below them (`myapp.edge`,
`myapp.runs`, …), and the domain imports neither edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "myapp"
EDGES = ("myapp.web", "myapp.dashboard")
DOMAIN = ("myapp.runs", "myapp.tasks", "myapp.store", "myapp.schedules")

# (importing package, imported package): a dependency that must not exist.
FORBIDDEN = [
    ("myapp.dashboard", "myapp.web"),
    ("myapp.web", "myapp.dashboard"),
    *((low, edge) for low in DOMAIN for edge in EDGES),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module that `source`, a module of `package`, imports anywhere
    (inside functions too), by absolute name; `from a import b` counts as
    importing `a.b` as well, since b may be a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        package = (
            importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        )
        for imported in sorted(imported_modules(path.read_text(), package)):
            for low, high in FORBIDDEN:
                if within(importer, low) and within(imported, high):
                    found.append(f"{importer} imports {imported}")
    return found


def test_web_dashboard_and_domain_keep_their_layers():
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        ("from myapp.web.errors import ApiError", "myapp.dashboard", "myapp.web"),
        ("from myapp import dashboard", "myapp.web", "myapp.dashboard"),
        ("import myapp.web.security", "myapp.runs", "myapp.web"),
        ("from ..web import errors", "myapp.dashboard", "myapp.web"),
        ("from .. import web", "myapp.dashboard", "myapp.web"),
        (
            "def f():\n    from myapp.dashboard import ids",
            "myapp.store",
            "myapp.dashboard",
        ),
    ],
)
def test_the_check_sees_every_form_of_import(source, package, expected):
    assert any(within(name, expected) for name in imported_modules(source, package))
