"""Validate a parsed JSON body against a `Spec`: cleaned value out, or an ApiError listing every issue.

Mirrors zod's behaviour (unknown keys dropped, no coercion, defaults filled) with zod-like messages, and adds what
Aionis left to a 500: finite numbers, exact embedding length. `bool` is never accepted as a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memload import contract as C
from memory_api.errors import ApiError
from memory_api.schema import MISSING, UUID_RE, Spec

# Free-form values (slots) are stored as jsonb and serialised with orjson, whose limit is 255 levels: deeper ones
# were a 500. 128 leaves room for the response envelope around them.
OPEN_VALUE_MAX_DEPTH = 128


@dataclass
class Issue:
    path: str
    message: str
    code: str | None = None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _number_array(spec: Spec, value: list[Any], path: str, issues: list[Issue]) -> list[Any] | None:
    """Fast path for long arrays of numbers (embeddings): one type pass instead of a call per element."""
    types = {type(v) for v in value}
    if types <= {float, int}:
        return value
    for i, v in enumerate(value):
        if type(v) not in (float, int):
            issues.append(Issue(_join(path, i), f"Expected number, received {_type_name(v)}"))
            break
    return None


def _check(spec: Spec, value: Any, path: str, issues: list[Issue]) -> Any:
    t = spec.type
    start = len(issues)
    if t == "any":
        return value
    if t == "string":
        if not isinstance(value, str):
            issues.append(Issue(path, f"Expected string, received {_type_name(value)}"))
            return None
        if spec.no_nul and "\x00" in value:
            issues.append(Issue(path, "String must not contain NUL (\\u0000) characters"))
        if spec.min_length is not None and len(value) < spec.min_length:
            issues.append(Issue(path, f"String must contain at least {spec.min_length} character(s)"))
        if spec.max_length is not None and len(value) > spec.max_length:
            issues.append(Issue(path, f"String must contain at most {spec.max_length} character(s)"))
        if spec.enum is not None and value not in spec.enum:
            expected = " | ".join(f"'{e}'" for e in spec.enum)
            issues.append(Issue(path, f"Invalid enum value. Expected {expected}, received '{value}'"))
        if spec.format == "uuid":
            if not UUID_RE.match(value):
                issues.append(Issue(path, "Invalid uuid"))
            else:
                value = value.lower()
        elif spec.format == "sha256" and not C.SHA256_HEX_RE.match(value):
            issues.append(Issue(path, "Invalid: expected 64 lowercase hex digits"))
        if spec.pattern is not None and len(issues) == start and not _compiled(spec.pattern).search(value):
            issues.append(Issue(path, f"Invalid: {spec.pattern_message or 'does not match ' + spec.pattern}",
                                spec.error_code))
        return value
    if t == "boolean":
        if not isinstance(value, bool):
            issues.append(Issue(path, f"Expected boolean, received {_type_name(value)}"))
        return value
    if t in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            issues.append(Issue(path, f"Expected number, received {_type_name(value)}"))
            return None
        if value != value or value in (float("inf"), float("-inf")):
            issues.append(Issue(path, "Expected a finite number"))
            return None
        if t == "integer":
            if isinstance(value, float):
                if not value.is_integer():
                    issues.append(Issue(path, "Expected integer, received float"))
                    return None
                value = int(value)
        if spec.minimum is not None and value < spec.minimum:
            issues.append(Issue(path, f"Number must be greater than or equal to {_fmt(spec.minimum)}"))
        if spec.maximum is not None and value > spec.maximum:
            issues.append(Issue(path, f"Number must be less than or equal to {_fmt(spec.maximum)}"))
        return value
    if t == "array":
        if not isinstance(value, list):
            issues.append(Issue(path, f"Expected array, received {_type_name(value)}"))
            return None
        n = len(value)
        if spec.min_length is not None and spec.min_length == spec.max_length and n != spec.min_length:
            issues.append(Issue(path, f"Array must contain exactly {spec.min_length} element(s), received {n}"))
            return None
        if spec.min_length is not None and n < spec.min_length:
            issues.append(Issue(path, f"Array must contain at least {spec.min_length} element(s)"))
        if spec.max_length is not None and n > spec.max_length:
            issues.append(Issue(path, f"Array must contain at most {spec.max_length} element(s)"))
        items = spec.items
        if items is None:
            return value
        if items.type == "number" and items.minimum is None and items.maximum is None:
            return _number_array(spec, value, path, issues)
        return [_check(items, v, _join(path, i), issues) for i, v in enumerate(value)]
    if t == "object":
        if not isinstance(value, dict):
            issues.append(Issue(path, f"Expected object, received {_type_name(value)}"))
            return None
        if spec.open_values:
            depth, nul = _walk(value)
            if depth > OPEN_VALUE_MAX_DEPTH:
                issues.append(Issue(path, f"Nesting must be at most {OPEN_VALUE_MAX_DEPTH} levels deep"))
            elif spec.no_nul and nul:
                issues.append(Issue(path, "Strings and keys must not contain NUL (\\u0000) characters"))
            return value
        out: dict[str, Any] = {}
        for key, sub in spec.properties.items():
            if key in value:
                out[key] = _check(sub, value[key], _join(path, key), issues)
            elif key in spec.required:
                issues.append(Issue(_join(path, key), "Required"))
            elif sub.default is not MISSING:
                d = sub.default
                out[key] = list(d) if isinstance(d, list) else d
        if spec.any_of_required and len(issues) == start and not any(out.get(k) for k in spec.any_of_required):
            issues.append(Issue(path, spec.any_of_message or f"must set one of {', '.join(spec.any_of_required)}"))
        return out
    raise AssertionError(f"unknown spec type {t}")


def _walk(value: Any) -> tuple[int, bool]:
    """(nesting depth, contains NUL) of a JSON value, iteratively: a deep value cannot exhaust the Python stack."""
    depth, nul = 0, False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str):
            nul = nul or "\x00" in v
        elif isinstance(v, list | dict):
            depth = max(depth, d)
            if depth > OPEN_VALUE_MAX_DEPTH:
                break
            if isinstance(v, dict):
                nul = nul or any("\x00" in k for k in v)
                stack.extend((x, d + 1) for x in v.values())
            else:
                stack.extend((x, d + 1) for x in v)
    return depth, nul


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def describe(issues: list[Issue]) -> str:
    """One line naming the field(s): `nodes.0.type: Required (+2 more issues)`."""
    first = issues[0]
    text = f"{first.path or '(body)'}: {first.message}"
    if len(issues) > 1:
        text += f" (+{len(issues) - 1} more issue{'s' if len(issues) > 2 else ''})"
    return text


def validate(spec: Spec, value: Any) -> Any:
    """The cleaned value, or raise ApiError 400 (invalid_request, or the field's own code) listing the issues."""
    issues: list[Issue] = []
    out = _check(spec, value, "", issues)
    if issues:
        code = next((i.code for i in issues if i.code), C.E_INVALID_REQUEST)
        raise ApiError(
            400,
            code,
            describe(issues),
            issues=[{"path": i.path, "message": i.message} for i in issues],
        )
    return out
