"""The error envelope `{"error", "message", "details"?}` and the exception every handler raises to produce it.

Client mistakes are ApiErrors with a 4xx status and a message naming the field; anything else reaching the app
becomes a logged 500 `internal_error` (see memory_api.app).
"""

from __future__ import annotations

from typing import Any

from memload import contract as C


class ApiError(Exception):
    """An HTTP error response: status, code, one-line message, optional details/issues/headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        issues: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.issues = issues
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.issues is not None:
            out["issues"] = self.issues
        if self.details is not None:
            out["details"] = self.details
        return out


def bad_request(code: str, message: str, details: Any = None) -> ApiError:
    return ApiError(400, code, message, details=details)


INTERNAL_BODY = {"error": C.E_INTERNAL, "message": "internal error"}
