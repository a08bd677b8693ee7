"""The one error type of the system, and every code a client can see.

Services raise `AppError(ErrorCode.X, "message")`; the HTTP adapter turns it into the error
envelope of the API contract. Anything that is not an AppError is a bug: it becomes
`500 INTERNAL_ERROR` and its stack trace goes to the log only.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    status: int

    def __new__(cls, value: str, status: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    VALIDATION_ERROR = ("VALIDATION_ERROR", 422)
    AUTH_REQUIRED = ("AUTH_REQUIRED", 401)
    AUTH_TOKEN_INVALID = ("AUTH_TOKEN_INVALID", 401)
    AUTH_TOKEN_EXPIRED = ("AUTH_TOKEN_EXPIRED", 401)
    AUTH_INVALID_CREDENTIALS = ("AUTH_INVALID_CREDENTIALS", 401)
    AUTH_REFRESH_INVALID = ("AUTH_REFRESH_INVALID", 401)
    AUTH_REFRESH_REUSED = ("AUTH_REFRESH_REUSED", 401)
    AUTH_TOO_MANY_ATTEMPTS = ("AUTH_TOO_MANY_ATTEMPTS", 429)
    FORBIDDEN = ("FORBIDDEN", 403)
    ACCOUNT_DISABLED = ("ACCOUNT_DISABLED", 403)
    NOT_FOUND = ("NOT_FOUND", 404)
    PHONE_ALREADY_REGISTERED = ("PHONE_ALREADY_REGISTERED", 409)
    SMS_CODE_INVALID = ("SMS_CODE_INVALID", 400)
    SMS_RATE_LIMITED = ("SMS_RATE_LIMITED", 429)
    REFERRER_INVALID = ("REFERRER_INVALID", 400)
    WECHAT_CODE_INVALID = ("WECHAT_CODE_INVALID", 400)
    WECHAT_RATE_LIMITED = ("WECHAT_RATE_LIMITED", 429)
    WECHAT_USER_BLOCKED = ("WECHAT_USER_BLOCKED", 403)
    WECHAT_UNAVAILABLE = ("WECHAT_UNAVAILABLE", 502)
    QUOTA_INSUFFICIENT = ("QUOTA_INSUFFICIENT", 402)
    PIPELINE_NOT_FOUND = ("PIPELINE_NOT_FOUND", 404)
    TASK_NOT_CANCELLABLE = ("TASK_NOT_CANCELLABLE", 409)
    IDEMPOTENCY_KEY_MISMATCH = ("IDEMPOTENCY_KEY_MISMATCH", 409)
    PLAN_NOT_FOUND = ("PLAN_NOT_FOUND", 404)
    PAYMENT_PROVIDER_ERROR = ("PAYMENT_PROVIDER_ERROR", 502)
    RATE_LIMITED = ("RATE_LIMITED", 429)
    METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405)
    SERVICE_UNAVAILABLE = ("SERVICE_UNAVAILABLE", 503)
    INTERNAL_ERROR = ("INTERNAL_ERROR", 500)
    AUTH_SESSION_ENDED = ("AUTH_SESSION_ENDED", 401)
    PAYLOAD_TOO_LARGE = ("PAYLOAD_TOO_LARGE", 413)
    UPLOAD_INVALID = ("UPLOAD_INVALID", 422)
    # Carried in task data, never as an HTTP status of its own.
    PIPELINE_STEP_FAILED = ("PIPELINE_STEP_FAILED", 500)


_DEFAULT_MESSAGES = {
    ErrorCode.VALIDATION_ERROR: "The request is not valid.",
    ErrorCode.AUTH_REQUIRED: "Sign in first.",
    ErrorCode.AUTH_TOKEN_INVALID: "The access token is not valid.",
    ErrorCode.AUTH_TOKEN_EXPIRED: "The access token has expired.",
    ErrorCode.FORBIDDEN: "You may not do this.",
    ErrorCode.NOT_FOUND: "Not found.",
    ErrorCode.METHOD_NOT_ALLOWED: "This method is not allowed on this path.",
    ErrorCode.SERVICE_UNAVAILABLE: "The service is busy; try again shortly.",
    ErrorCode.INTERNAL_ERROR: "Something went wrong on our side.",
    ErrorCode.AUTH_SESSION_ENDED: "This session has ended; sign in again.",
    ErrorCode.PAYLOAD_TOO_LARGE: "The body is too large.",
}


class AppError(Exception):
    """An expected failure with a client-visible code. Its message must be safe to show."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(
            code, code.value.replace("_", " ").capitalize()
        )
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{code.value}: {self.message}")

    @property
    def status(self) -> int:
        return self.code.status

    def envelope(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "request_id": request_id,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


class RunBusy(AppError):
    """Another run of a maintenance job is live (app.db.runs): 503 to an admin who asked for
    one meanwhile, who can try again once it has ended; a timer's turn is skipped. Here, not
    beside the run rows, so the job wrappers can tell it apart without loading the database
    layer."""

    def __init__(self, why: str) -> None:
        super().__init__(ErrorCode.SERVICE_UNAVAILABLE, f"{why}; try again once it has ended.")
