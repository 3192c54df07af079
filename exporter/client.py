"""N-central REST client: session, authentication and refresh, submit and poll, retries with backoff.

Each call either returns parsed JSON or raises an `UpstreamError` whose message is free of secrets.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import requests
import urllib3.exceptions

from exporter import __version__
from exporter.config import NCentralSettings
from exporter.errors import (
    AuthFailed,
    ConnectionFailed,
    Forbidden,
    HTTPError,
    InvalidResponse,
    NotSupported,
    RateLimited,
    Stopped,
    UpstreamError,
)
from exporter.logs import register_secret, scrub
from exporter.report import PollResult, parse_poll, report_id_of

log = logging.getLogger(__name__)

USER_AGENT = f"ncentral-patch-exporter/{__version__}"
# Refresh the access token once this share of its lifetime has passed.
REFRESH_AT = 0.8
# N-able's recommended backoff is 2 s, 5 s, 10 s, …: multiples of the configured first delay.
_BACKOFF_STEPS = (1.0, 2.5, 5.0, 10.0)
_EXCERPT = 160
# The shortest wall-clock bound of one HTTP call: a run may overrun its timeout by this much at most.
_MIN_CALL = 1.0


@dataclass
class _Token:
    value: str
    renew_at: float  # monotonic


class _Unauthorized(Exception):
    """A 401: the caller decides whether to authenticate again."""

    def __init__(self, status: int, excerpt: str) -> None:
        super().__init__(status)
        self.status = status
        self.excerpt = excerpt


Sleep = Callable[[float], None]


def interruptible_sleep(stop: threading.Event) -> Sleep:
    """A sleep that ends at once, raising Stopped, when the exporter shuts down."""

    def sleep(seconds: float) -> None:
        if stop.wait(max(0.0, seconds)):
            raise Stopped

    return sleep


class NCentralClient:
    def __init__(
        self,
        settings: NCentralSettings,
        *,
        session: requests.Session | None = None,
        sleep: Sleep = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.verify = settings.ca_bundle or settings.verify_tls
        self._sleep = sleep
        self._monotonic = monotonic
        self._access: _Token | None = None
        self._refresh: _Token | None = None
        register_secret(settings.token, permanent=True)
        if not settings.verify_tls:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def close(self) -> None:
        self._session.close()

    # --- the report API ---

    def submit(self, body: Mapping[str, Any], deadline: float) -> int:
        answer = self._api("POST", "/api/report/patch-comparison", deadline, json_body=body, idempotent=False)
        return report_id_of(answer)

    def poll(self, report_id: int, deadline: float) -> PollResult:
        try:
            answer = self._api("GET", f"/api/report/{report_id}", deadline, idempotent=True)
        except UpstreamError as exc:
            exc.report_id = report_id
            raise
        return parse_poll(answer, report_id, self.settings.max_series)

    # --- authentication ---

    def _api(
        self, method: str, path: str, deadline: float, *, json_body: Any = None, idempotent: bool
    ) -> dict[str, Any]:
        """A report call with a valid access token; one re-authentication and retry on 401."""
        token = self._access_token(deadline)
        try:
            return self._call(method, path, deadline, bearer=token, json_body=json_body, idempotent=idempotent)
        except _Unauthorized:
            log.info("N-central answered 401 to %s %s; authenticating again", method, path)
        token = self._authenticate(deadline)
        try:
            return self._call(method, path, deadline, bearer=token, json_body=json_body, idempotent=idempotent)
        except _Unauthorized as exc:
            raise AuthFailed(
                f"N-central answered 401 to {method} {path} even with a fresh access token: {exc.excerpt}",
                status=exc.status,
            ) from None

    def _access_token(self, deadline: float) -> str:
        now = self._monotonic()
        if self._access is not None and now < self._access.renew_at:
            return self._access.value
        if self._refresh is not None and now < self._refresh.renew_at:
            try:
                return self._refresh_tokens(deadline)
            except (_Unauthorized, UpstreamError) as exc:
                log.info("token refresh failed (%s); authenticating again with the JWT", _describe(exc))
        return self._authenticate(deadline)

    def _authenticate(self, deadline: float) -> str:
        self._access = self._refresh = None
        try:
            answer = self._call(
                "POST", "/api/auth/authenticate", deadline, bearer=self.settings.token, idempotent=True
            )
        except _Unauthorized as exc:
            raise AuthFailed(
                f"N-central rejected the API user's JWT (HTTP {exc.status}): it is invalid or expired; "
                "generate a new one under Administration > User Management > Users > API Access",
                status=exc.status,
            ) from None
        return self._take_tokens(answer, "authenticate")

    def _refresh_tokens(self, deadline: float) -> str:
        assert self._refresh is not None
        answer = self._call(
            "POST", "/api/auth/refresh", deadline, text_body=self._refresh.value, idempotent=True
        )
        log.debug("access token refreshed")
        return self._take_tokens(answer, "refresh")

    def _take_tokens(self, answer: Mapping[str, Any], call: str) -> str:
        try:
            access, refresh = answer["tokens"]["access"], answer["tokens"]["refresh"]
            access_token, refresh_token = access["token"], refresh["token"]
            access_expiry, refresh_expiry = float(access["expirySeconds"]), float(refresh["expirySeconds"])
        except (KeyError, TypeError, ValueError):
            access_token = refresh_token = None
            access_expiry = refresh_expiry = 0.0
        if not (_header_safe(access_token) and _header_safe(refresh_token)):
            raise InvalidResponse(f"{call} answer carries no usable access/refresh token pair")
        if not (0 < access_expiry < 10**9 and 0 < refresh_expiry < 10**9):
            raise InvalidResponse(f"{call} answer carries implausible token lifetimes")
        register_secret(access_token)
        register_secret(refresh_token)
        now = self._monotonic()
        self._access = _Token(access_token, now + REFRESH_AT * access_expiry)
        self._refresh = _Token(refresh_token, now + REFRESH_AT * refresh_expiry)
        return access_token

    # --- one HTTP call, with retries ---

    def _call(
        self,
        method: str,
        path: str,
        deadline: float,
        *,
        bearer: str | None = None,
        json_body: Any = None,
        text_body: str | None = None,
        idempotent: bool,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self._once(method, path, deadline, bearer, json_body, text_body)
            except _Retryable as retry:
                if not (idempotent or retry.surely_not_processed) or attempt >= self.settings.retries:
                    raise retry.error from None
                delay = retry.retry_after if retry.retry_after is not None else self._backoff(attempt)
                if self._monotonic() + delay >= deadline:
                    raise retry.error from None
                log.debug("%s %s: %s; retrying in %.1fs", method, path, retry.error.message, delay)
                self._sleep(delay)
                attempt += 1

    def _backoff(self, attempt: int) -> float:
        if attempt < len(_BACKOFF_STEPS):
            return self.settings.retry_backoff * _BACKOFF_STEPS[attempt]
        return self.settings.retry_backoff * _BACKOFF_STEPS[-1] * 2.0 ** (attempt - len(_BACKOFF_STEPS) + 1)

    def _once(
        self, method: str, path: str, deadline: float, bearer: str | None, json_body: Any, text_body: str | None
    ) -> dict[str, Any]:
        headers: dict[str, str] = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data: bytes | None = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(json_body).encode()
        elif text_body is not None:
            headers["Content-Type"] = "text/plain"
            data = text_body.encode()
        # One wall-clock bound for the whole call, body included: the run's deadline and request_timeout
        # (at least _MIN_CALL, so a last poll just before the run's deadline still gets its answer).
        now = self._monotonic()
        call_deadline = max(now + _MIN_CALL, min(deadline, now + self.settings.request_timeout))
        timeout = call_deadline - now
        where = f"{method} {path}"
        try:
            with self._session.request(
                method, self.settings.url + path, headers=headers, data=data, timeout=timeout, stream=True,
                allow_redirects=False,
            ) as response:
                body = self._read(response, where, call_deadline)
        except _BodyTooSlow as slow:
            raise _Retryable(ConnectionFailed(
                f"{where}: HTTP {slow.status} answer not complete within {timeout:.1f}s "
                f"({slow.received} bytes received); gave up reading"
            ), False) from None
        except requests.exceptions.InvalidHeader as exc:  # e.g. Content-Length: 5, 6
            raise InvalidResponse(f"{where}: malformed header in the answer: {_root_cause(exc)}") from None
        except requests.exceptions.ConnectTimeout:
            raise _Retryable(ConnectionFailed(f"{where}: connect timeout after {timeout:.1f}s"), True) from None
        except requests.exceptions.Timeout:
            raise _Retryable(ConnectionFailed(f"{where}: no answer within {timeout:.1f}s"), False) from None
        except requests.exceptions.SSLError as exc:
            raise ConnectionFailed(f"{where}: TLS error: {_root_cause(exc)}") from None
        except requests.exceptions.ConnectionError as exc:
            not_sent = _connect_failed(exc)
            raise _Retryable(ConnectionFailed(f"{where}: {_root_cause(exc)}"), not_sent) from None
        except requests.exceptions.RequestException as exc:
            raise _Retryable(ConnectionFailed(f"{where}: {_root_cause(exc)}"), False) from None
        return self._interpret(response, body, where)

    def _read(self, response: requests.Response, where: str, call_deadline: float) -> bytes | bytearray:
        cap = self.settings.max_response_size
        declared = content_length(response.headers.get("Content-Length"))
        if declared == -1:
            raise InvalidResponse(
                f"{where}: HTTP {response.status_code} answer has a malformed Content-Length header",
                status=response.status_code,
            )
        if declared is not None and declared > cap:
            raise InvalidResponse(
                f"{where}: HTTP {response.status_code} body of {declared} bytes is over the {cap}-byte cap",
                status=response.status_code,
            )
        body = read_body_until(response, cap, call_deadline, self._monotonic)
        if body is None:
            raise InvalidResponse(
                f"{where}: HTTP {response.status_code} body is over the {cap}-byte cap; stopped reading",
                status=response.status_code,
            )
        return body

    def _interpret(self, response: requests.Response, body: bytes | bytearray, where: str) -> dict[str, Any]:
        status = response.status_code
        excerpt = self._excerpt(body)
        if status == 401:
            raise _Unauthorized(status, excerpt)
        if status == 403:
            raise Forbidden(
                f"{where}: HTTP 403 ({excerpt}); the API user must be created at the SO (service organization) "
                "level to generate patch reports",
                status=status,
            )
        if status == 404:
            raise NotSupported(
                f"{where}: HTTP 404 ({excerpt}); the patch reports API needs N-central 2025.4 or later",
                status=status,
            )
        if status == 429:
            raise _Retryable(
                RateLimited(f"{where}: HTTP 429 rate limited ({excerpt})", status=status),
                True,
                _retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise _Retryable(HTTPError(f"{where}: HTTP {status} ({excerpt})", status=status), status == 503)
        if not 200 <= status < 300:
            raise HTTPError(f"{where}: HTTP {status} ({excerpt})", status=status)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            content_type = response.headers.get("Content-Type", "no content type")
            raise InvalidResponse(
                f"{where}: HTTP {status} answer is not JSON ({content_type}): {excerpt}", status=status
            ) from None
        if not isinstance(parsed, dict):
            raise InvalidResponse(f"{where}: HTTP {status} answer is not a JSON object: {excerpt}", status=status)
        return parsed

    def _excerpt(self, body: bytes | bytearray) -> str:
        # Scrubbed before it is cut short, so no part of a token can survive the cut.
        text = " ".join(scrub(body[:65536].decode("utf-8", "replace")).split())
        return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…") if text else "empty body"


class _Retryable(Exception):
    """A failure another attempt may cure; `surely_not_processed` allows retrying a non-idempotent POST."""

    def __init__(self, error: UpstreamError, surely_not_processed: bool, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.surely_not_processed = surely_not_processed
        self.retry_after = retry_after


def _header_safe(token: object) -> TypeGuard[str]:
    """A token we can put in a header as it is: printable, no whitespace (else it would be mangled, and
    quoted in error messages in a form the scrubber could not recognise)."""
    return isinstance(token, str) and bool(token) and token.isprintable() and not any(c.isspace() for c in token)


def _retry_after(value: str | None) -> float | None:
    return retry_after_seconds(value, time.time())


# --- strict header values (a header is attacker-controlled text: `int("²")` raises, 5,000 digits too) ---

_MAX_DIGITS = 18  # 10**18 bytes or seconds: beyond any real value, and far below int()'s digit limit
_MAX_HTTP_DATE = 64


def _decimal(value: str) -> int | None:
    """A plain ASCII decimal of bounded length, else None (`isdigit()` would accept `²`)."""
    if 0 < len(value) <= _MAX_DIGITS and value.isascii() and value.isdecimal():
        return int(value)
    return None


def content_length(value: str | None) -> int | None:
    """The Content-Length header: None when absent, -1 when malformed (repeated equal values are allowed,
    as RFC 9110 permits)."""
    if value is None:
        return None
    lengths = {_decimal(part.strip()) for part in value.split(",", 8)}
    if None in lengths or len(lengths) != 1:
        return -1
    length = lengths.pop()
    return length if length is not None else -1


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date, in seconds from `now`; None when absent or malformed
    (then the usual backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    seconds = _decimal(value)
    if seconds is not None:
        return float(seconds)
    if not value or len(value) > _MAX_HTTP_DATE or not value.isascii() or not value.isprintable():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


# --- reading a body by a wall-clock deadline ---


class _BodyTooSlow(Exception):
    """The answer's body did not arrive in full before the call's deadline."""

    def __init__(self, status: int, received: int) -> None:
        super().__init__(status, received)
        self.status = status
        self.received = received


def _socket_of(response: requests.Response) -> Any:
    """The socket under a streamed response (urllib3 2.x), or None: used to bound each read by the deadline."""
    fp = getattr(response.raw, "_fp", None)  # http.client.HTTPResponse
    buffered = getattr(fp, "fp", None)  # the socket's BufferedReader
    return getattr(getattr(buffered, "raw", None), "_sock", None)


def read_body_until(
    response: requests.Response, cap: int, deadline: float, monotonic: Callable[[], float] = time.monotonic
) -> bytearray | None:
    """The (decoded) body, read as it arrives, each read bounded by `deadline` (monotonic); None once it
    exceeds `cap` bytes. Raises _BodyTooSlow at the deadline, however slowly the bytes keep dripping in
    (a socket timeout alone bounds only the gap between two bytes)."""
    buffer = bytearray()
    sock = _socket_of(response)
    while True:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise _BodyTooSlow(response.status_code, len(buffer))
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(max(0.01, remaining))
        try:
            chunk = response.raw.read1(65536, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise _BodyTooSlow(response.status_code, len(buffer)) from None
        except urllib3.exceptions.ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from None
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from None
        if not chunk:
            return buffer  # not copied into a bytes: json.loads reads a bytearray as it is
        if len(buffer) + len(chunk) > cap:
            return None
        buffer += chunk


def _connect_failed(exc: requests.exceptions.ConnectionError) -> bool:
    """True when no connection was made, so the server surely did not see the request."""
    cause: object = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)
    return isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError)


def _root_cause(exc: BaseException) -> str:
    cause: object = exc.args[0] if exc.args else exc
    cause = getattr(cause, "reason", cause)
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        return "DNS lookup failed"
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(cause, urllib3.exceptions.ProtocolError | ConnectionResetError):
        return "connection reset or closed without an answer"
    text = scrub(str(cause))  # before cutting: no part of a token may survive the cut
    return text if len(text) <= 200 else text[:197] + "..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Unauthorized):
        return f"HTTP {exc.status}"
    if isinstance(exc, UpstreamError):
        return exc.message
    return type(exc).__name__
