"""`locust -f FILE --help` lists FILE's own options.

Locust prints `--help` before it imports the locustfile, so options a locustfile registers with
`init_command_line_parser` (the suite's `--scope`, `--duration-s`, ...) are missing from it. This hook makes Locust
import the named locustfile(s) first when `-h`/`--help` is on its command line. A one-line `.pth` file in the
virtualenv loads it (`python -m locustfiles.help_hook install`, run by `make venv`): at interpreter start it only
adds a meta-path finder, which does nothing until `locust.argument_parser` is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

TARGET = "locust.argument_parser"
PTH_NAME = "memload_locust_help.pth"
PTH_LINE = 'import sys; exec("try:\\n import locustfiles.help_hook as _h; _h.install()\\nexcept Exception:\\n pass")\n'


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of `locust.argument_parser` so its `parse_locustfile_option` imports locustfiles on --help."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # once, and never recursively
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _patch(module: ModuleType) -> None:
    parse = getattr(module, "parse_locustfile_option", None)
    if parse is None:
        return

    def parse_locustfile_option(args: Sequence[str] | None = None) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "-h" in argv or "--help" in argv:
            _import_locustfiles(argv)
        return parse(args)

    module.parse_locustfile_option = parse_locustfile_option  # type: ignore[attr-defined]


def _import_locustfiles(argv: list[str]) -> None:
    """Import the `-f` locustfile(s) so their `init_command_line_parser` listeners are registered; errors are
    left to Locust's own run (help must still print)."""
    value = os.environ.get("LOCUST_LOCUSTFILE", "")
    for i, arg in enumerate(argv):
        if arg in ("-f", "--locustfile") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--locustfile="):
            value = arg.split("=", 1)[1]
    for raw in filter(None, (p.strip() for p in value.split(","))):
        path = Path(raw)
        if path.suffix != ".py" or not path.is_file():
            continue
        try:
            from locust.util.load_locustfile import load_locustfile

            load_locustfile(str(path))
        except Exception:  # Locust reports a broken locustfile itself when it runs it
            pass


def install() -> None:
    """Add the finder (idempotent); called by the `.pth` line at interpreter start."""
    if TARGET in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


def install_pth() -> Path:
    """Write the `.pth` file into this interpreter's site-packages."""
    target = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not target.is_file() or target.read_text() != PTH_LINE:
        target.write_text(PTH_LINE)
    return target


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m locustfiles.help_hook install")
    print(f"installed {install_pth()}")
