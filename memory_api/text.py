"""Text handling as Aionis does it: whitespace, clamp, PII pseudonyms.

Redaction replaces e-mail addresses, US SSNs, IPv4 addresses and US phone numbers with `[KIND#sha8]`, a stable
token that lets repeats be correlated without storing the value. Patterns are Aionis's, made ASCII where
JavaScript's `\\d`/`\\b` are ASCII-only.
"""

from __future__ import annotations

import re
from typing import Any

from memload.identity import sha256_hex

_WS = re.compile(r"\s+")
_EMAIL = re.compile(r"[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}", re.IGNORECASE | re.ASCII)
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b", re.ASCII)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", re.ASCII)
_PHONE = re.compile(
    r"(?<![A-Za-z0-9])(?:\+?1[\s-]?)?(?:\(\s*[0-9]{3}\s*\)|[0-9]{3})[\s-]?[0-9]{3}[\s-]?[0-9]{4}(?![A-Za-z0-9])"
)
_RULES = (("email", "EMAIL", _EMAIL), ("ssn", "SSN", _SSN), ("ip", "IP", _IPV4), ("phone", "PHONE", _PHONE))
_MAYBE_PII = re.compile(r"[@0-9]")  # every pattern needs a digit or an '@': most texts skip all four regexes


def normalize_text(text: str, max_len: int) -> str:
    """Collapse whitespace runs to one space, trim, clamp to max_len as `text[:max_len-1] + '…'`."""
    collapsed = _WS.sub(" ", text).strip()
    if len(collapsed) <= max_len:
        return collapsed
    return collapsed[: max(0, max_len - 1)] + "…"


def redact_pii(text: str, counts: dict[str, int] | None = None) -> str:
    """Replace PII with `[KIND#sha8]`, adding per-kind hit counts to `counts`."""
    if not _MAYBE_PII.search(text):
        return text
    for key, kind, pattern in _RULES:

        def repl(m: re.Match[str], key: str = key, kind: str = kind) -> str:
            if counts is not None:
                counts[key] = counts.get(key, 0) + 1
            return f"[{kind}#{sha256_hex(m.group(0))[:8]}]"

        text = pattern.sub(repl, text)
    return text


def redact_json_strings(value: Any, counts: dict[str, int]) -> Any:
    """Redact every string value (not keys) inside a JSON value."""
    if isinstance(value, str):
        return redact_pii(value, counts)
    if isinstance(value, list):
        return [redact_json_strings(v, counts) for v in value]
    if isinstance(value, dict):
        return {k: redact_json_strings(v, counts) for k, v in value.items()}
    return value
