"""The kit's data-flow boundaries, checked on the import graph so they cannot erode quietly.

seed → load → collect → analyse → report: `locustfiles/` speaks only HTTP (never imports the API or a database
driver), `analysis/` reads files only, `memory_api/` imports none of the tooling, only `scripts/` starts processes,
and the fake embedder exists once. The installed packages never import the developers' benchmarks or the tests
(neither is installed); the `memload` subcommands live in `scripts/commands/`, the services they drive in
`scripts/`; routes are spelled only in memload/contract.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from memload.config import REPO_ROOT

TOOLING = {"scripts", "seeding", "locustfiles", "analysis"}
INSTALLED = ["memload", "memory_api", "seeding", "locustfiles", "analysis", "scripts"]
NOT_INSTALLED = {"benchmarks", "tests"}

RULES: dict[str, set[str]] = {
    # package -> top-level modules it must not import
    "locustfiles": {"memory_api", "seeding", "scripts", "analysis", "psycopg", "psycopg_pool", "sqlalchemy"},
    "analysis": {"memory_api", "seeding", "scripts", "locustfiles", "psycopg", "sqlalchemy", "subprocess",
                 "urllib", "requests", "socket", "locust"},
    "memory_api": TOOLING | {"locust"},
    "seeding": {"memory_api", "locustfiles", "analysis", "scripts", "locust", "subprocess"},
    "memload": TOOLING | {"memory_api", "locust", "subprocess"},
    "scripts": set(),
}
RULES = {package: banned | NOT_INSTALLED for package, banned in RULES.items()}


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


def test_the_installed_packages_are_the_ones_checked() -> None:
    """pyproject.toml installs exactly the packages this module checks: `benchmarks/` and `tests/` stay out."""
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert sorted(pyproject["tool"]["setuptools"]["packages"]["find"]["include"]) == sorted(f"{p}*" for p in INSTALLED)
    assert sorted(RULES) == sorted(INSTALLED)


def test_cli_commands_and_services_live_apart() -> None:
    """Every `memload` subcommand module is in `scripts/commands/`; no command module is left in `scripts/`, and
    `scripts/` holds no developer benchmark (`bench_*.py` belong in `benchmarks/`)."""
    from scripts.cli import COMMAND_MODULES

    assert all(m.startswith("scripts.commands.") for m in COMMAND_MODULES), COMMAND_MODULES
    listed = {m.rsplit(".", 1)[1] for m in COMMAND_MODULES}
    on_disk = {p.stem for p in (REPO_ROOT / "scripts" / "commands").glob("*.py")} - {"__init__"}
    assert on_disk == listed
    stray = sorted(p.name for p in (REPO_ROOT / "scripts").glob("*.py")
                   if p.name.startswith(("cmd_", "bench_")) or "def register(" in p.read_text())
    assert stray == []


ROUTE_SPELLING = re.compile(r"/v1/memory|/health\b")
ROUTES_HOME = "memload/contract.py"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may name a route; code takes it from the contract)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _route_spellings(source: str, rel: str) -> list[str]:
    """`file:line: 'string'` for every non-docstring string constant (f-string parts included) naming a route."""
    tree = ast.parse(source, filename=rel)
    prose = _docstrings(tree)
    return [f"{rel}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
            and ROUTE_SPELLING.search(node.value)]


def test_route_spelling_check_names_file_and_line() -> None:
    src = ('"""Docs may say GET /health."""\nURL = "http://x/v1/memory/write"\n'
           'ok = f"{base}{HEALTH}"\nbad = f"{base}/health"\n')
    assert _route_spellings(src, "pkg/mod.py") == ["pkg/mod.py:2: 'http://x/v1/memory/write'",
                                                   "pkg/mod.py:4: '/health'"]


def test_routes_are_spelled_only_in_the_contract() -> None:
    """A route ("/v1/memory/…", the health route) written as a string in the kit's code outside the contract is a copy
    that can drift: take it from memload.contract (or memload.client). tests/ and docs are not the kit's code."""
    packages = sorted(d for d in REPO_ROOT.iterdir() if (d / "__init__.py").is_file() and d.name != "tests")
    offences = [hit for pkg in packages for path in sorted(pkg.rglob("*.py"))
                if (rel := path.relative_to(REPO_ROOT).as_posix()) != ROUTES_HOME
                for hit in _route_spellings(path.read_text(), rel)]
    assert not offences, "routes spelled outside memload/contract.py (use memload.contract):\n" + "\n".join(offences)


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
