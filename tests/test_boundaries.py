"""The kit's data-flow boundaries, checked on the import graph so they cannot erode quietly.

seed → load → collect → analyse → report: `locustfiles/` speaks only HTTP (never imports the API or a database
driver), `analysis/` reads files only, `memory_api/` imports none of the tooling, only `scripts/` starts processes,
and the fake embedder exists once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from memload.config import REPO_ROOT

TOOLING = {"scripts", "seeding", "locustfiles", "analysis"}

RULES: dict[str, set[str]] = {
    # package -> top-level modules it must not import
    "locustfiles": {"memory_api", "seeding", "scripts", "analysis", "psycopg", "psycopg_pool", "sqlalchemy"},
    "analysis": {"memory_api", "seeding", "scripts", "locustfiles", "psycopg", "sqlalchemy", "subprocess",
                 "urllib", "requests", "socket", "locust"},
    "memory_api": TOOLING | {"locust"},
    "seeding": {"memory_api", "locustfiles", "analysis", "scripts", "locust", "subprocess"},
    "memload": TOOLING | {"memory_api", "locust", "subprocess"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_respects_its_import_boundary(package: str) -> None:
    offences = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        bad = _imports(path) & RULES[package]
        if bad:
            offences.append(f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}")
    assert offences == []


def test_the_fake_embedder_exists_once() -> None:
    hits = [p.relative_to(REPO_ROOT) for pkg in ("memload", "memory_api", "seeding", "scripts", "locustfiles")
            for p in (REPO_ROOT / pkg).rglob("*.py") if "0x6D2B79F5" in p.read_text()]
    assert [str(h) for h in hits] == ["memload/embedder.py"]


def _test_side_imports(path: Path) -> set[str]:
    """Dotted names of the `tests.*` modules `path` imports (relative imports resolved against tests/)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO_ROOT).parent.parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from tests import test_x`
    return {name for name in found if name == "tests" or name.startswith("tests.")}


def test_tests_import_helpers_from_tests_support_only() -> None:
    """A test module imports no other test module and not conftest (which holds fixtures and hooks only): shared
    helpers live in tests/support, so running or moving one test file never drags another's tests along."""
    tests_dir = REPO_ROOT / "tests"
    offences = []
    for path in sorted(tests_dir.rglob("*.py")):
        for name in sorted(_test_side_imports(path)):
            leaf = name.split(".")[1] if name.count(".") >= 1 else ""
            if leaf == "conftest" or leaf.startswith("test_"):
                offences.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert offences == []
    # helper modules live in tests/support: at the top of tests/ only test modules, conftest.py and __init__.py
    loose = [p.name for p in sorted(tests_dir.glob("*.py"))
             if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py")]
    assert loose == [], f"helper modules belong in tests/support: {loose}"
