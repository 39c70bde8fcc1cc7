"""Typed, path-aware access to JSON artifacts, so a bad value is reported as `file: key a.b[2].c: why`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from analysis.errors import MalformedArtifact

_MISSING = object()


def load_json(path: Path) -> Any:
    """Parse `path`; invalid JSON becomes a one-line MalformedArtifact with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedArtifact(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedArtifact(path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


class Doc:
    """A JSON value plus the file it came from and its key path; getters validate types and name the key."""

    def __init__(self, path: Path, value: Any, key: str = "") -> None:
        self.path = path
        self.value = value
        self.key = key

    def _sub(self, name: str | int) -> str:
        if isinstance(name, int):
            return f"{self.key}[{name}]"
        return f"{self.key}.{name}" if self.key else name

    def _fail(self, key: str, why: str) -> MalformedArtifact:
        return MalformedArtifact(self.path, f"key {key or '<root>'}: {why}")

    def has(self, name: str) -> bool:
        return isinstance(self.value, dict) and name in self.value and self.value[name] is not None

    def _raw(self, name: str, required: bool) -> Any:
        if not isinstance(self.value, dict):
            raise self._fail(self.key, f"expected an object, got {_kind(self.value)}")
        if name not in self.value:
            if required:
                raise self._fail(self._sub(name), "missing")
            return _MISSING
        return self.value[name]

    def obj(self, name: str, *, required: bool = True) -> Doc | None:
        raw = self._raw(name, required)
        if raw is _MISSING or (raw is None and not required):
            return None
        if not isinstance(raw, dict):
            raise self._fail(self._sub(name), f"expected an object, got {_kind(raw)}")
        return Doc(self.path, raw, self._sub(name))

    def items(self, name: str, *, required: bool = True) -> list[Doc]:
        raw = self._raw(name, required)
        if raw is _MISSING or (raw is None and not required):
            return []
        if not isinstance(raw, list):
            raise self._fail(self._sub(name), f"expected a list, got {_kind(raw)}")
        key = self._sub(name)
        return [Doc(self.path, v, f"{key}[{i}]") for i, v in enumerate(raw)]

    def num(self, name: str, *, required: bool = True, nullable: bool = False) -> float | None:
        raw = self._raw(name, required)
        if raw is _MISSING:
            return None
        if raw is None:
            if nullable or not required:
                return None
            raise self._fail(self._sub(name), "expected a number, got null")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise self._fail(self._sub(name), f"expected a number, got {raw!r}")
        return float(raw)

    def int_(self, name: str, *, required: bool = True) -> int | None:
        value = self.num(name, required=required)
        if value is None:
            return None
        if value != int(value) or value < 0:
            raise self._fail(self._sub(name), f"expected a non-negative integer, got {self.value[name]!r}")
        return int(value)

    def str_(self, name: str, *, required: bool = True) -> str | None:
        raw = self._raw(name, required)
        if raw is _MISSING or (raw is None and not required):
            return None
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise self._fail(self._sub(name), f"expected a string, got {_kind(raw)}")
        return str(raw)

    def bool_(self, name: str, *, required: bool = True) -> bool | None:
        raw = self._raw(name, required)
        if raw is _MISSING or (raw is None and not required):
            return None
        if not isinstance(raw, bool):
            raise self._fail(self._sub(name), f"expected true/false, got {raw!r}")
        return raw

    def counts(self, name: str, *, required: bool = True) -> dict[str, int]:
        """An object of non-negative integer counts (e.g. by_status)."""
        sub = self.obj(name, required=required)
        if sub is None:
            return {}
        return {str(k): sub.int_(str(k)) or 0 for k in sub.value}

    def numbers(self, name: str, *, required: bool = True, strict: bool = True) -> dict[str, float | None]:
        """An object of numbers (null allowed, e.g. a latency block with no successful request).

        `strict=False` skips members that are not numbers (e.g. the `history` list inside a case's `pacing`)."""
        sub = self.obj(name, required=required)
        if sub is None:
            return {}
        if not strict:
            return {str(k): (None if v is None else float(v)) for k, v in sub.value.items()
                    if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}
        return {str(k): sub.num(str(k), nullable=True) for k in sub.value}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), repr(value))


def dig(value: Any, *paths: str) -> Any:
    """First non-empty value among dotted `paths` in a plain dict (for loosely specified files like manifest.json)."""
    for path in paths:
        cur = value
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                cur = None
                break
            cur = cur[part]
        if cur not in (None, "", {}, []):
            return cur
    return None
