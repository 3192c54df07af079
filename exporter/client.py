"""N-central REST client: session, authentication and refresh, submit and poll, retries with backoff.

Each call either returns parsed JSON or raises an `UpstreamError` whose message is free of secrets.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from exporter import __version__
from exporter.config import NCentralSettings, host_port
from exporter.deadline import BodyTooSlow, DeadlineAdapter, call_deadline, read_body_until
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
from exporter.numbers import decimal_int
from exporter.report import PollResult, parse_poll, report_id_of
from exporter.scrub import clipped, header_safe, register_secret, scrub

log = logging.getLogger(__name__)

USER_AGENT = f"ncentral-patch-exporter/{__version__}"
# Refresh the access token once this share of its lifetime has passed.
REFRESH_AT = 0.8
# N-able's recommended backoff is 2 s, 5 s, 10 s, …: multiples of the configured first delay.
_BACKOFF_STEPS = (1.0, 2.5, 5.0, 10.0)
_EXCERPT = 160
# The first N-central release with the patch reports API.
MIN_SERVER_VERSION = (2025, 4)
MIN_SERVER_RELEASE = f"{MIN_SERVER_VERSION[0]}.{MIN_SERVER_VERSION[1]}"
_RELEASE_KEY = "Installation: Deployment Product Version"


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself after authentication; None where it did not say."""

    version: str | None  # the N-central release, e.g. 2025.4.0.12
    api_version: str | None  # the API service's own version (GET /api/server-info), e.g. 3.1.0

    @property
    def supported(self) -> bool | None:
        """Whether the release has the patch reports API; None when the version is unknown or unreadable."""
        release = parse_version(self.version)
        return None if release is None else release[:2] >= MIN_SERVER_VERSION


class _ServerLog:
    """Logs what an N-central says about itself once per change, per server (`host:port`): a process has a
    client per collection kind, and each learns the server anew after every authentication."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, ServerInfo] = {}

    def learnt(self, target: str, server: ServerInfo) -> None:
        with self._lock:
            if self._seen.get(target) == server:
                return
            self._seen[target] = server
        log.info("N-central server", extra={"version": server.version or "unknown",
                                            "api_version": server.api_version or "unknown", "target": target})


_SERVER_LOG = _ServerLog()


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """`2025.4.0.12` → (2025, 4, 0, 12); None for anything that is not dotted numbers."""
    parts = (text or "").strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


# The shortest wall-clock bound of one HTTP call: a run may overrun its timeout by this much at most.
_MIN_CALL = 1.0


class _Wire(NamedTuple):
    gate: threading.Semaphore
    check: Callable[[], None]


# The slots and the check of the calls made on this thread (see `on_the_wire`).
_WIRE: contextvars.ContextVar[_Wire | None] = contextvars.ContextVar("ncentral_wire", default=None)


@contextlib.contextmanager
def on_the_wire(gate: threading.Semaphore, check: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Calls made inside (on this thread) hold a slot of `gate` only from sending the request to the last
    byte of the answer: not while the request is built, the answer parsed or a retry waits. Workers that
    outnumber the slots then build and parse their calls while the others' are on the wire, and N-central
    still never sees more calls at once than the slots. `check` runs once a call has its slot, right before
    it is sent (a run's stop, reload and deadline checks: what it raises ends the call unsent)."""
    bound = _WIRE.set(_Wire(gate, check))
    try:
        yield
    finally:
        _WIRE.reset(bound)


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
        log_server: bool = True,
    ) -> None:
        """`log_server`: log the server's release at info level when it changes (--check-connection prints
        it as a step of its own instead)."""
        self.settings = settings
        self._log_server = log_server
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # The environment is read once, for the one host the client calls, not twice a call (a fifth of a
        # call's CPU): the proxy variables (HTTPS_PROXY, NO_PROXY, ...) and, unless ncentral.ca_bundle is
        # set, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE. A ~/.netrc entry for the host is never read: it would
        # replace the bearer token with basic auth.
        env_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._session.verify = settings.ca_bundle or (settings.verify_tls and env_bundle) or settings.verify_tls
        self._session.proxies = requests.utils.get_environ_proxies(settings.url)
        self._session.trust_env = False
        # Every call ends by its wall-clock deadline, headers included (see exporter.deadline).
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, DeadlineAdapter())
        self._sleep = sleep
        self._monotonic = monotonic
        self._access: _Token | None = None
        self._refresh: _Token | None = None
        # Swapped whole after each authentication; read by the metrics and --check-connection.
        self.server: ServerInfo | None = None
        self.target = server_address(settings.url)
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
        return parse_poll(answer, report_id, self.settings.max_series)

    # --- the calls --check-connection makes, one step each ---

    def health(self, deadline: float) -> dict[str, Any]:
        """GET /api/health (no authentication): whether an N-central API answers at the URL."""
        try:
            return self._call("GET", "/api/health", deadline, idempotent=True)
        except NotSupported as exc:
            raise self._no_api("GET /api/health", exc) from None

    def authenticate(self, deadline: float) -> ServerInfo:
        """Authenticate with the JWT afresh and read the server's version; raises AuthFailed on 401."""
        self._authenticate(deadline)
        assert self.server is not None  # set by _learn_server, or it raised
        return self.server

    def validate(self, deadline: float) -> str:
        """GET /api/auth/validate with the current access token; its message ("The token is valid.")."""
        answer = self._api("GET", "/api/auth/validate", deadline, idempotent=True, check_version=False)
        message = answer.get("message")
        return message if isinstance(message, str) else ""

    # --- the REST API (the customer scan) ---

    def get(self, path: str, deadline: float) -> dict[str, Any]:
        """An idempotent GET of `path` (with its query); safe to call from two threads at once."""
        # The device and active-issue endpoints predate 2025.4: only the patch reports need that release.
        return self._api("GET", path, deadline, idempotent=True, check_version=False)

    # --- authentication ---

    def _api(
        self, method: str, path: str, deadline: float, *, json_body: Any = None, idempotent: bool,
        check_version: bool = True,
    ) -> dict[str, Any]:
        """A report call with a valid access token; one re-authentication and retry on 401."""
        with self._token_lock:
            token = self._access_token(deadline)
        if check_version:
            self._require_supported()
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
                "generate a new one under Administration > User Management > Users > API Access "
                "(the API user must have multi-factor authentication turned off)",
                status=exc.status,
            ) from None
        except NotSupported as exc:
            # Every N-central with a REST API has this call: a 404 means the URL points elsewhere.
            raise self._no_api("POST /api/auth/authenticate", exc) from None
        token = self._take_tokens(answer, "authenticate")
        self._learn_server(deadline, token)
        return token

    def _no_api(self, where: str, exc: NotSupported) -> HTTPError:
        return HTTPError(
            f"{where} on {self.target}: HTTP 404: no N-central API at {self.settings.url}/api; set ncentral.url "
            "to the server's base URL, e.g. https://ncentral.example.com",
            status=exc.status,
        )

    def _learn_server(self, deadline: float, token: str) -> None:
        """Read the N-central release (server-info/extra) and the API service's version (server-info).

        Reading: a server that will not say (403, 404, an odd answer) is not refused for that; only a
        release known to be older than MIN_SERVER_RELEASE is (see `_require_supported`)."""
        found: dict[str, str | None] = {}
        for path, pick in (("/api/server-info/extra", _release_of), ("/api/server-info", _api_version_of)):
            try:
                found[path] = pick(self._call("GET", path, deadline, bearer=token, idempotent=True))
            except ConnectionFailed:
                raise
            except (_Unauthorized, UpstreamError) as exc:
                log.warning("cannot read the N-central version", extra={"call": f"GET {path}",
                                                                       "error": _describe(exc)})
                found[path] = None
        server = ServerInfo(found["/api/server-info/extra"], found["/api/server-info"])
        if self._log_server:
            _SERVER_LOG.learnt(self.target, server)
        self.server = server

    def _require_supported(self) -> None:
        server = self.server
        if server is not None and server.supported is False:
            raise NotSupported(
                f"N-central {server.version} at {self.target} has no patch reports API: it needs N-central "
                f"{MIN_SERVER_RELEASE} or later"
            )

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
        if not (header_safe(access_token) and header_safe(refresh_token)):
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
                log.debug("retrying in %.1fs after: %s", delay, retry.error.message)
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
        where = f"{method} {path}"
        timeout = 0.0
        clock = None
        try:
            prepared = self._session.prepare_request(
                requests.Request(method, self.settings.url + path, headers=headers, data=data)
            )
            wire = _WIRE.get()
            with wire.gate if wire is not None else contextlib.nullcontext():
                if wire is not None:
                    wire.check()
                # One wall-clock bound for the whole call, body included: the run's deadline and
                # request_timeout (at least _MIN_CALL, so a last poll just before the run's deadline still gets
                # its answer), counted from when the call may go on the wire.
                now = self._monotonic()
                until = max(now + _MIN_CALL, min(deadline, now + self.settings.request_timeout))
                timeout = until - now
                with call_deadline(until, self._monotonic) as clock, self._session.send(
                    prepared, timeout=timeout, stream=True, allow_redirects=False
                ) as response:
                    body = self._read(response, where, until)
            if wire is not None:
                # Let the thread waiting for the slot just freed take it now: this thread goes on to parse the
                # answer and build its next call while holding the GIL, which would keep the slot idle for
                # a millisecond or more (measured: a tenth of a two-slot scan's wall time).
                time.sleep(0)
        except BodyTooSlow as slow:
            raise _Retryable(ConnectionFailed(
                f"{where}: HTTP {slow.status} answer not complete within {timeout:.1f}s "
                f"({slow.received} bytes received); gave up reading"
            ), False) from None
        except requests.exceptions.InvalidHeader as exc:  # e.g. Content-Length: 5, 6
            raise InvalidResponse(f"{where}: malformed header in the answer: {_root_cause(exc)}") from None
        except requests.exceptions.ConnectTimeout:
            raise _Retryable(
                ConnectionFailed(f"{where}: connect timeout to {self.target} after {timeout:.1f}s"), True
            ) from None
        except requests.exceptions.Timeout:
            # The status line and headers were still dripping in at the call's deadline.
            if clock is not None and clock.received:
                raise _Retryable(ConnectionFailed(
                    f"{where}: answer not complete within {timeout:.1f}s ({clock.received} bytes of the status "
                    "line and headers received); gave up reading"
                ), False) from None
            raise _Retryable(
                ConnectionFailed(f"{where}: no answer from {self.target} within {timeout:.1f}s"), False
            ) from None
        except requests.exceptions.SSLError as exc:
            raise ConnectionFailed(f"{where}: TLS error with {self.target}: {_root_cause(exc)}") from None
        except requests.exceptions.ConnectionError as exc:
            not_sent = _connect_failed(exc)
            raise _Retryable(ConnectionFailed(f"{where} at {self.target}: {_root_cause(exc)}"), not_sent) from None
        except requests.exceptions.RequestException as exc:
            raise _Retryable(ConnectionFailed(f"{where} at {self.target}: {_root_cause(exc)}"), False) from None
        return self._interpret(response, body, where)

    def _read(self, response: requests.Response, where: str, until: float) -> bytes | bytearray:
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
        body = read_body_until(response, cap, until, self._monotonic)
        if body is None:
            raise InvalidResponse(
                f"{where}: HTTP {response.status_code} body is over the {cap}-byte cap; stopped reading",
                status=response.status_code,
            )
        return body

    def _interpret(self, response: requests.Response, body: bytes | bytearray, where: str) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                content_type = response.headers.get("Content-Type", "no content type")
                raise InvalidResponse(
                    f"{where}: HTTP {status} answer is not JSON ({content_type}): {self._excerpt(body)}",
                    status=status,
                ) from None
            if not isinstance(parsed, dict):
                raise InvalidResponse(
                    f"{where}: HTTP {status} answer is not a JSON object: {self._excerpt(body)}", status=status
                )
            return parsed
        # An error: only now is the body worth an excerpt (scrubbed, field messages first).
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
            server = self.server
            hint = f"the patch reports API needs N-central {MIN_SERVER_RELEASE} or later"
            if server is not None and server.supported:
                hint += f", and the server says it is {server.version}: does something (a proxy) rewrite /api paths?"
            raise NotSupported(f"{where}: HTTP 404 ({excerpt}); {hint}", status=status)
        if status == 429:
            raise _Retryable(
                RateLimited(f"{where}: HTTP 429 rate limited ({excerpt})", status=status),
                True,
                _retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise _Retryable(HTTPError(f"{where}: HTTP {status} ({excerpt})", status=status), status == 503)
        raise HTTPError(f"{where}: HTTP {status} ({excerpt})", status=status)

    def _excerpt(self, body: bytes | bytearray) -> str:
        fields = _field_errors(body)
        if fields:
            return fields
        text = body[:65536].decode("utf-8", "replace")
        return _quoted_excerpt(text, _EXCERPT) if text.split() else "empty body"


class _Retryable(Exception):
    """A failure another attempt may cure; `surely_not_processed` allows retrying a non-idempotent POST."""

    def __init__(self, error: UpstreamError, surely_not_processed: bool, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.surely_not_processed = surely_not_processed
        self.retry_after = retry_after


def server_address(url: str) -> str:
    """`host:port` of a base URL, the port spelt out (`[::1]:443` for IPv6), for messages."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return host_port(parts.hostname or "?", port)


def _field_errors(body: bytes | bytearray) -> str | None:
    """An `ErrorResponse` with `errors[]` as one line: its message, then each field's own message (what the
    user must fix, e.g. `startDate: startDate must be in the format YYYY-MM-DD`)."""
    try:
        document = json.loads(body[:65536])
    except (ValueError, RecursionError):
        return None
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors:
        return None
    parts = [
        f"{item.get('field')}: {item.get('message')}" if item.get("field") else str(item.get("message"))
        for item in errors[:10]
        if isinstance(item, dict)
    ]
    if not parts:
        return None
    message = document.get("message")
    return _quoted_excerpt(f"{message if isinstance(message, str) else 'error'} {'; '.join(parts)}", 4 * _EXCERPT)


def _quoted_excerpt(text: str, limit: int) -> str:
    """Upstream text on one line, scrubbed before it is cut short (so no part of a token can survive the
    cut), at most `limit` characters, quoted."""
    text = " ".join(scrub(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _release_of(answer: Mapping[str, Any]) -> str | None:
    """The N-central release from `GET /api/server-info/extra` (`data._extra` "Deployment Product Version")."""
    data = answer.get("data")
    extra = data.get("_extra") if isinstance(data, dict) else None
    version = extra.get(_RELEASE_KEY) if isinstance(extra, dict) else None
    return _short_text(version)


def _api_version_of(answer: Mapping[str, Any]) -> str | None:
    return _short_text(answer.get("version"))


def _short_text(value: object) -> str | None:
    """Upstream text fit for a label value: one short printable word (any secret in it scrubbed), else None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return scrub(value) if 0 < len(value) <= 64 and value.isprintable() else None


def _retry_after(value: str | None) -> float | None:
    return retry_after_seconds(value, time.time())


# --- strict header values (a header is attacker-controlled text: `int("²")` raises, 5,000 digits too) ---

_MAX_HTTP_DATE = 64


def content_length(value: str | None) -> int | None:
    """The Content-Length header: None when absent, -1 when malformed (repeated equal values are allowed,
    as RFC 9110 permits)."""
    if value is None:
        return None
    lengths = {decimal_int(part.strip()) for part in value.split(",", 8)}
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
    seconds = decimal_int(value)
    if seconds is not None:
        return float(seconds)
    if not value or len(value) > _MAX_HTTP_DATE or not value.isascii() or not value.isprintable():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


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
    return clipped(str(cause), 200)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Unauthorized):
        return f"HTTP {exc.status}"
    if isinstance(exc, UpstreamError):
        return exc.message
    return type(exc).__name__
