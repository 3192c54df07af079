"""The configuration's values: the frozen `Config`, the N-central settings, and the checks every config
section is parsed with (each collection kind parses its own section with them; `config_file` reads the
file).

Every problem is reported as one `ConfigError` line naming the file or key, so the command can print it
and exit 2 without a traceback.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from exporter.collection import Settings
from exporter.errors import os_reason
from exporter.files import read_regular
from exporter.scrub import header_safe, shown

log = logging.getLogger(__name__)

TOKEN_ENV = "NCENTRAL_API_TOKEN"  # noqa: S105 - the name of the variable, not a secret

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
# Prometheus's duration syntax: units from the largest down, each at most once (`1h30m`, `1w2d`, `1s500ms`).
_PROM_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_PROM_UNITS = (31536000.0, 604800.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)
_DURATION_HINT = "use Prometheus durations like 500ms, 30s, 1h30m, 1d, 1w, or seconds"
# Below this an interval only adds load to N-central: it generates each report in the background, and
# every customer scan costs one call per customer. Warned about, not refused: tests and demos need them.
SENSIBLE_MIN_INTERVAL = 900.0
_SIZE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}
_MAX_DURATION = 366 * 86400.0


# Far above what a JWT (about 1 KiB) or any config of this exporter needs; a file beyond is a mistake.
MAX_TOKEN_FILE = 64 * 2**10
MAX_CONFIG_FILE = 2**20


class ConfigError(Exception):
    """A configuration problem, worded as one line for the operator."""


@dataclass(frozen=True)
class NCentralSettings:
    url: str
    token: str = field(repr=False)
    verify_tls: bool = True
    ca_bundle: str | None = None
    request_timeout: float = 30.0
    max_response_size: int = 4 * 2**20
    retries: int = 4
    retry_backoff: float = 2.0
    max_series: int = 5000


@dataclass(frozen=True)
class Notice:
    """A line to log about a config (what was normalised, what looks like a mistake), said only once the
    whole config, the flags and the state file were accepted: a refused config prints its one error line."""

    level: int
    message: str
    extra: Mapping[str, object] = field(default_factory=dict)
    once: tuple[str, ...] | None = None  # said once per process for the same key (a reload repeats none)


@dataclass(frozen=True)
class Config:
    ncentral: NCentralSettings
    collections: tuple[Settings, ...] = ()  # every kind's, in the registry's order
    storage_path: str | None = None
    notices: tuple[Notice, ...] = field(default=(), compare=False, repr=False)

    def collection(self, name: str) -> Settings | None:
        """The collection of that name, of whatever kind; None if there is none."""
        return next((collection for collection in self.collections if collection.name == name), None)


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number, a decimal with one unit (`1.5h`) or a Prometheus duration (`1h30m`, `1w`)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: invalid duration {shown(value)} ({_DURATION_HINT})")
    if isinstance(value, int) and abs(value) > _MAX_DURATION:
        seconds = math.inf  # too large for a float, and far too long anyway
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        single = _DURATION.match(text)
        compound = _PROM_DURATION.match(text) if text else None
        if single:
            seconds = float(single.group(1)) * _DURATION_UNITS[single.group(2)]
        elif compound:
            seconds = sum(int(part) * unit for part, unit in zip(compound.groups(), _PROM_UNITS, strict=True) if part)
        else:
            raise ConfigError(f"{key}: invalid duration {shown(value)}{line_of(value)} ({_DURATION_HINT})")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{key}: duration must be a finite number of seconds >= 0, got {shown(value)}")
    if seconds > _MAX_DURATION:
        raise ConfigError(f"{key}: duration {shown(value)} is longer than the 366d the exporter accepts")
    return seconds


def positive_duration(value: object, key: str) -> float:
    seconds = parse_duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key}: duration must be greater than zero, got {shown(value)}")
    return seconds


def _size(value: object, key: str) -> int:
    match = _SIZE.match(str(value).strip()) if not isinstance(value, bool) else None
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{key}: invalid size {shown(value)} (use bytes or e.g. 512KiB, 50MiB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def mapping(value: object, key: str, allowed: set[str], *, optional: bool = False) -> Mapping[str, Any]:
    """`value` if it is a mapping with only `allowed` keys (`key` "" is the file's top level). None (a
    section left empty) is an empty mapping where the section is `optional`, else not a mapping."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key or 'the configuration'}: must be a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        prefix = f"{key}." if key else ""
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")
    return value


def string(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string")
    return value.strip()


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {shown(value)}")
    return value


def choices(value: object, key: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: must be a non-empty list (leave the key out to mean all)")
    by_lower = {choice.lower(): choice for choice in allowed}
    chosen: list[str] = []
    for item in value:
        canonical = by_lower.get(str(item).strip().lower())
        if canonical is None:
            raise ConfigError(f"{key}: unknown value {shown(item)} (allowed: {', '.join(allowed)})")
        if canonical not in chosen:
            chosen.append(canonical)
    return tuple(chosen)


def _checked_token(token: str, source: str) -> str:
    """A JWT is one printable ASCII word; anything else would end up in a malformed header (and its error).
    The messages never quote the token."""
    if not token.isascii():
        raise ConfigError(f"{source}: the token contains non-ASCII characters (a JWT is ASCII only)")
    if not header_safe(token):
        raise ConfigError(f"{source}: the token contains whitespace or control characters (one line, no spaces)")
    return token


def _token(raw: Mapping[str, Any], env: Mapping[str, str]) -> str:
    from_env = env.get(TOKEN_ENV, "").strip()
    if from_env:
        return _checked_token(from_env, f"environment variable {TOKEN_ENV}")
    if "api_token" in raw and "api_token_file" in raw:
        raise ConfigError("ncentral.api_token: set either api_token or api_token_file, not both")
    if "api_token" in raw:
        return _checked_token(string(raw["api_token"], "ncentral.api_token"), "ncentral.api_token")
    if "api_token_file" in raw:
        path = string(raw["api_token_file"], "ncentral.api_token_file")
        try:
            token = read_regular(path, MAX_TOKEN_FILE).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"ncentral.api_token_file: cannot read {path}: {os_reason(exc)}") from None
        if not token:
            raise ConfigError(f"ncentral.api_token_file: {path} is empty")
        return _checked_token(token, "ncentral.api_token_file")
    raise ConfigError(f"ncentral.api_token: no token (set api_token, api_token_file or {TOKEN_ENV})")


_noted: set[tuple[str, ...]] = set()
_noted_lock = threading.Lock()


def log_notices(config: Config) -> None:
    """Log what parsing `config` had to say; call once the config (and the flags, the state file) was
    accepted, at start-up, --check-config or a reload. A notice with `once` is said once per process."""
    for notice in config.notices:
        if notice.once is not None:
            with _noted_lock:
                if notice.once in _noted:
                    continue
                _noted.add(notice.once)
        log.log(notice.level, notice.message, extra=dict(notice.extra))


def host_port(host: str, port: int | None) -> str:
    """`host:port` as people and URLs write it: an IPv6 address in brackets, no port when `port` is None."""
    shown_host = f"[{host}]" if ":" in host else host
    return f"{shown_host}:{port}" if port is not None else shown_host


# The user-info part of a URL (`user:password@`), up to the last `@` before the path.
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^/?#]*@")


def _without_userinfo(given: str) -> str:
    """`given` as a config error may show it: any `user:password@` replaced by `***@`."""
    return _USERINFO.sub(r"\1***@", given, count=1)


def normalise_url(given: str, notices: list[Notice] | None = None) -> str:
    """The server's base URL as the client joins `/api/...` to it: no trailing `/`, no `/api` (as people copy
    it from the API explorer). What was changed is added to `notices` (said once, at info level). A URL
    with a user name or password is refused without repeating them: the exporter authenticates with the
    API token only."""
    shown_url = _without_userinfo(given)
    if shown_url != given:
        raise ConfigError("ncentral.url: must not contain a user name or password (user:password@); the exporter "
                          f"authenticates with the API token only, got {shown(shown_url, 200)}")
    base = re.split(r"[?#]", given, maxsplit=1)[0]  # scheme, host and path: a query may hold a secret
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise ConfigError(f"ncentral.url: invalid port in {shown(base, 200)} (a number from 1 to 65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in given):
        raise ConfigError(f"ncentral.url: must start with http:// or https:// and name a host, got {shown(base, 200)}")
    if port == 0:
        raise ConfigError(f"ncentral.url: invalid port in {shown(base, 200)} (a number from 1 to 65535)")
    if parts.query or parts.fragment:
        raise ConfigError("ncentral.url: must be the server's base URL, without ?query or #fragment, "
                          f"got {shown(base, 200)}")
    path = parts.path.rstrip("/")
    if path.lower().endswith("/api"):
        path = path[:-4].rstrip("/")
    url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if url != given and notices is not None:
        notices.append(Notice(logging.INFO, "ncentral.url normalised to the server's base URL",
                              {"given": given, "url": url}, once=("url", given, url)))
    return url


def ncentral_settings(value: object, env: Mapping[str, str], notices: list[Notice]) -> NCentralSettings:
    raw = mapping(value, "ncentral", {
        "url", "api_token", "api_token_file", "verify_tls", "ca_bundle", "request_timeout",
        "max_response_size", "retries", "retry_backoff", "max_series",
    })
    if "url" not in raw:
        raise ConfigError("ncentral.url: required")
    url = normalise_url(string(raw["url"], "ncentral.url"), notices)
    retries = raw.get("retries", 4)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ConfigError(f"ncentral.retries: must be a whole number from 0 to 20, got {shown(retries)}")
    ca_bundle = raw.get("ca_bundle")
    if ca_bundle is not None:
        ca_bundle = string(ca_bundle, "ncentral.ca_bundle")
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"ncentral.ca_bundle: no such file {ca_bundle}")
    return NCentralSettings(
        url=url,
        token=_token(raw, env),
        verify_tls=_bool(raw.get("verify_tls", True), "ncentral.verify_tls"),
        ca_bundle=ca_bundle,
        request_timeout=positive_duration(raw.get("request_timeout", "30s"), "ncentral.request_timeout"),
        max_response_size=_size(raw.get("max_response_size", "4MiB"), "ncentral.max_response_size"),
        retries=retries,
        retry_backoff=positive_duration(raw.get("retry_backoff", "2s"), "ncentral.retry_backoff"),
        max_series=count_limit(raw.get("max_series", 5000), "ncentral.max_series"),
    )


def count_limit(value: object, key: str) -> int:
    """A bound on a count (series, devices): a whole number from 1 to 10,000,000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
        raise ConfigError(f"{key}: must be a whole number from 1 to 10000000, got {shown(value)}")
    return value


def regex(value: object, key: str, flags: int = 0) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a regular expression (a string), got {shown(value)}")
    try:
        return re.compile(value, flags)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression {shown(value)}: {exc}") from None


class Located(str):
    """A scalar YAML could not build (`2025-13-01` looks like a date but is none): kept as text, with its
    line, so the key's own check names the key and the line."""

    line: int


def line_of(value: object) -> str:
    """" at line N" for a `Located` value, else nothing: for the error of the key that holds it."""
    return f" at line {value.line}" if isinstance(value, Located) else ""
