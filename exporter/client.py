"""N-central REST client: session, authentication and refresh, submit and poll, retries with backoff.

Each call either returns parsed JSON or raises an `UpstreamError` whose message is free of secrets.
"""

from __future__ import annotations

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
        # The customer scan calls from two threads: one of them authenticates or refreshes at a time.
        self._token_lock = threading.Lock()
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
        return parse_poll(answer, report_id)

    # --- the REST API (the customer scan) ---

    def get(self, path: str, deadline: float) -> dict[str, Any]:
        """An idempotent GET of `path` (with its query); safe to call from two threads at once."""
        return self._api("GET", path, deadline, idempotent=True)

    # --- authentication ---

    def _api(
        self, method: str, path: str, deadline: float, *, json_body: Any = None, idempotent: bool
    ) -> dict[str, Any]:
        """A report call with a valid access token; one re-authentication and retry on 401."""
        with self._token_lock:
            token = self._access_token(deadline)
        try:
            return self._call(method, path, deadline, bearer=token, json_body=json_body, idempotent=idempotent)
        except _Unauthorized:
            log.info("N-central answered 401 to %s %s; authenticating again", method, path)
        with self._token_lock:
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
        timeout = max(0.1, min(self.settings.request_timeout, deadline - self._monotonic()))
        where = f"{method} {path}"
        try:
            with self._session.request(
                method, self.settings.url + path, headers=headers, data=data, timeout=timeout, stream=True,
                allow_redirects=False,
            ) as response:
                body = self._read(response, where)
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

    def _read(self, response: requests.Response, where: str) -> bytes:
        cap = self.settings.max_response_size
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InvalidResponse(
                f"{where}: HTTP {response.status_code} body of {declared} bytes is over the {cap}-byte cap",
                status=response.status_code,
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > cap:
                raise InvalidResponse(
                    f"{where}: HTTP {response.status_code} body is over the {cap}-byte cap; stopped reading",
                    status=response.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _interpret(self, response: requests.Response, body: bytes, where: str) -> dict[str, Any]:
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

    def _excerpt(self, body: bytes) -> str:
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
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
