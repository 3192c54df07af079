"""Upstream failures, each carrying the `reason` label used in metrics and logs."""

from __future__ import annotations

from typing import ClassVar

from exporter.scrub import scrub


class UpstreamError(Exception):
    """A run failed because of N-central; `reason` is the metric label for it."""

    reason: ClassVar[str] = "http"

    def __init__(self, message: str, *, status: int | None = None, report_id: int | None = None) -> None:
        # Upstream text (error bodies, exception texts) may echo a token: scrubbed here, once for all.
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.report_id = report_id


class ConnectionFailed(UpstreamError):
    reason = "connection"


class RateLimited(UpstreamError):
    reason = "rate_limited"


class HTTPError(UpstreamError):
    reason = "http"


class AuthFailed(UpstreamError):
    reason = "auth"


class Forbidden(UpstreamError):
    reason = "forbidden"


class NotSupported(UpstreamError):
    reason = "not_supported"


class ReportFailed(UpstreamError):
    reason = "report_failed"


class ReportTimeout(UpstreamError):
    reason = "timeout"


class InvalidResponse(UpstreamError):
    reason = "invalid_response"


class InternalError(UpstreamError):
    """Not N-central's fault: a bug of the exporter's, caught so the run is still counted and logged."""

    reason = "internal"


# Every reason the exporter knows, exported as 0 from the start so increase() works before a failure.
REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (
        ConnectionFailed, RateLimited, HTTPError, AuthFailed, Forbidden, NotSupported, ReportFailed,
        ReportTimeout, InvalidResponse, InternalError,
    )
)


class Stopped(Exception):
    """The exporter is shutting down; the interrupted run is neither a success nor a failure."""


def os_reason(exc: BaseException, *, detail: bool = False) -> str:
    """Why a file could not be read or written, for a one-line message: the OS's words (`Permission
    denied`), else the exception's type (`UnicodeDecodeError`), with its text when `detail`."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if detail else type(exc).__name__
