"""Load and validate the YAML configuration into frozen settings.

Every problem is reported as one `ConfigError` line naming the file or key, so the command can print it
and exit 2 without a traceback.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from yaml.reader import ReaderError

from exporter.errors import os_reason
from exporter.files import read_regular
from exporter.lifecycle import DEFAULT_END_OF_LIFE_OS, EndOfLife
from exporter.scrub import header_safe, shown

log = logging.getLogger(__name__)

TOKEN_ENV = "NCENTRAL_API_TOKEN"  # noqa: S105 - the name of the variable, not a secret

# The vendor page's allowed filter values, in the vendor's spelling.
INSTALL_STATUSES = (
    "Installed", "Not Installed", "Aborted", "Failed", "In Progress", "Installed With Errors",
)
PATCH_APPROVALS = ("Approved for Install", "No Approval", "Not Approved", "Declined", "Approved for Removal")
PATCH_CATEGORIES = (
    "Applications", "Critical Updates", "Security Updates", "Definition Updates", "Drivers", "Feature Packs",
    "Service Packs", "Third Party", "Tools", "Update Rollups", "Updates", "Upgrades",
)

_REPORT_NAME = re.compile(r"^[a-z0-9_-]+$")
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
_ROLLING = re.compile(r"^(\d{1,5})d$")
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
class ReportSettings:
    name: str
    interval: float = 3600.0
    start_date: str = "90d"
    install_statuses: tuple[str, ...] | None = None
    patch_approvals: tuple[str, ...] | None = None
    patch_categories: tuple[str, ...] | None = None
    timeout: float = 1800.0
    poll_interval: float = 2.0
    poll_max_interval: float = 30.0
    max_data_age: float = 0.0

    @property
    def fingerprint(self) -> str:
        """Identifies what the report asks N-central for; a stored result is only valid for the same one."""
        spec = [self.start_date, self.install_statuses, self.patch_approvals, self.patch_categories]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


# The customer scan's name in the store, the state file and the run metrics' `report` label.
CUSTOMERS = "customers"


@dataclass(frozen=True)
class CustomerSettings:
    """The optional per-customer scan (devices and their active issues)."""

    interval: float = 3600.0
    patch_services: tuple[str, ...] = ("Patch Status v2", "Patch Status")
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    timeout: float = 600.0  # the scan's deadline: its retries, backoffs and remaining pages stay within it
    max_series: int = 20_000  # most series one scan may publish (2 per customer and device class)
    max_devices: int = 500_000  # most devices one scan may list (each is held while the scan runs)
    stale_after: float = 7 * 86400.0  # an agent silent longer than this is stale
    end_of_life_os: tuple[EndOfLife, ...] = DEFAULT_END_OF_LIFE_OS
    name: str = field(default=CUSTOMERS, init=False)
    kind: ClassVar[str] = "customer-scan"  # runs on its own worker, beside the reports (see scheduler.py)

    def wanted(self, customer: str) -> bool:
        """Whether a customer of this name is scanned and published (regexes searched, not anchored)."""
        if self.include is not None and not self.include.search(customer):
            return False
        return self.exclude is None or not self.exclude.search(customer)

    def is_patch_service(self, service_name: str) -> bool:
        return service_name.strip().casefold() in {name.casefold() for name in self.patch_services}

    @property
    def fingerprint(self) -> str:
        """What the scan publishes; a stored result is kept only while this stays the same."""
        spec = [
            sorted(name.casefold() for name in self.patch_services),
            self.include.pattern if self.include is not None else None,
            self.exclude.pattern if self.exclude is not None else None,
            self.stale_after,
            [entry.spec for entry in self.end_of_life_os],
        ]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


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
    reports: tuple[ReportSettings, ...]
    storage_path: str | None = None
    customers: CustomerSettings | None = None
    notices: tuple[Notice, ...] = field(default=(), compare=False, repr=False)


def resolve_start_date(spec: str, today: dt.date) -> str:
    rolling = _ROLLING.match(spec)
    if rolling:
        return (today - dt.timedelta(days=int(rolling.group(1)))).isoformat()
    return spec


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
            raise ConfigError(f"{key}: invalid duration {shown(value)}{_line(value)} ({_DURATION_HINT})")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{key}: duration must be a finite number of seconds >= 0, got {shown(value)}")
    if seconds > _MAX_DURATION:
        raise ConfigError(f"{key}: duration {shown(value)} is longer than the 366d the exporter accepts")
    return seconds


def _positive_duration(value: object, key: str) -> float:
    seconds = parse_duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key}: duration must be greater than zero, got {value!r}")
    return seconds


def _size(value: object, key: str) -> int:
    match = _SIZE.match(str(value).strip()) if not isinstance(value, bool) else None
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{key}: invalid size {value!r} (use bytes or e.g. 512KiB, 50MiB)")
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


def _string(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a non-empty string")
    return value.strip()


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _choices(value: object, key: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: must be a non-empty list (leave the key out to mean all)")
    by_lower = {choice.lower(): choice for choice in allowed}
    chosen: list[str] = []
    for item in value:
        canonical = by_lower.get(str(item).strip().lower())
        if canonical is None:
            raise ConfigError(f"{key}: unknown value {item!r} (allowed: {', '.join(allowed)})")
        if canonical not in chosen:
            chosen.append(canonical)
    return tuple(chosen)


def _start_date(value: object, key: str) -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    rolling = _ROLLING.match(text)
    if rolling:
        if not 0 < int(rolling.group(1)) <= 36500:
            raise ConfigError(f"{key}: a rolling window must be 1d to 36500d, got {value!r}")
        return text
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(
            f"{key}: invalid start date {str(value)!r}{_line(value)} (use YYYY-MM-DD or a rolling window like 90d)"
        ) from None


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
        return _checked_token(_string(raw["api_token"], "ncentral.api_token"), "ncentral.api_token")
    if "api_token_file" in raw:
        path = _string(raw["api_token_file"], "ncentral.api_token_file")
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
                          f"authenticates with the API token only, got {shown_url!r}")
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise ConfigError(f"ncentral.url: invalid port in {given!r} (a number from 1 to 65535)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in given):
        raise ConfigError(f"ncentral.url: must start with http:// or https:// and name a host, got {given!r}")
    if port == 0:
        raise ConfigError(f"ncentral.url: invalid port in {given!r} (a number from 1 to 65535)")
    if parts.query or parts.fragment:
        raise ConfigError(f"ncentral.url: must be the server's base URL, without ?query or #fragment, got {given!r}")
    path = parts.path.rstrip("/")
    if path.lower().endswith("/api"):
        path = path[:-4].rstrip("/")
    url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if url != given and notices is not None:
        notices.append(Notice(logging.INFO, "ncentral.url normalised to the server's base URL",
                              {"given": given, "url": url}, once=("url", given, url)))
    return url


def _ncentral(value: object, env: Mapping[str, str], notices: list[Notice]) -> NCentralSettings:
    raw = mapping(value, "ncentral", {
        "url", "api_token", "api_token_file", "verify_tls", "ca_bundle", "request_timeout",
        "max_response_size", "retries", "retry_backoff", "max_series",
    })
    if "url" not in raw:
        raise ConfigError("ncentral.url: required")
    url = normalise_url(_string(raw["url"], "ncentral.url"), notices)
    retries = raw.get("retries", 4)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ConfigError(f"ncentral.retries: must be a whole number from 0 to 20, got {retries!r}")
    ca_bundle = raw.get("ca_bundle")
    if ca_bundle is not None:
        ca_bundle = _string(ca_bundle, "ncentral.ca_bundle")
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"ncentral.ca_bundle: no such file {ca_bundle}")
    return NCentralSettings(
        url=url,
        token=_token(raw, env),
        verify_tls=_bool(raw.get("verify_tls", True), "ncentral.verify_tls"),
        ca_bundle=ca_bundle,
        request_timeout=_positive_duration(raw.get("request_timeout", "30s"), "ncentral.request_timeout"),
        max_response_size=_size(raw.get("max_response_size", "4MiB"), "ncentral.max_response_size"),
        retries=retries,
        retry_backoff=_positive_duration(raw.get("retry_backoff", "2s"), "ncentral.retry_backoff"),
        max_series=_max_series(raw.get("max_series", 5000)),
    )


def _max_series(value: object, key: str = "ncentral.max_series") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**7:
        raise ConfigError(f"{key}: must be a whole number from 1 to 10000000, got {shown(value)}")
    return value


def _report(value: object, key: str) -> ReportSettings:
    raw = mapping(value, key, {
        "name", "interval", "start_date", "install_statuses", "patch_approvals", "patch_categories",
        "timeout", "poll_interval", "poll_max_interval", "max_data_age",
    })
    if "name" not in raw:
        raise ConfigError(f"{key}.name: required")
    name = raw["name"]
    if not isinstance(name, str) or not _REPORT_NAME.match(name):
        raise ConfigError(f"{key}.name: must match [a-z0-9_-]+, got {name!r}")
    poll_interval = _positive_duration(raw.get("poll_interval", "2s"), f"{key}.poll_interval")
    poll_max = _positive_duration(raw.get("poll_max_interval", "30s"), f"{key}.poll_max_interval")
    if poll_max < poll_interval:
        raise ConfigError(f"{key}.poll_max_interval: must not be shorter than poll_interval")
    return ReportSettings(
        name=name,
        interval=_positive_duration(raw.get("interval", "1h"), f"{key}.interval"),
        start_date=_start_date(raw.get("start_date", "90d"), f"{key}.start_date"),
        install_statuses=_choices(raw.get("install_statuses"), f"{key}.install_statuses", INSTALL_STATUSES),
        patch_approvals=_choices(raw.get("patch_approvals"), f"{key}.patch_approvals", PATCH_APPROVALS),
        patch_categories=_choices(raw.get("patch_categories"), f"{key}.patch_categories", PATCH_CATEGORIES),
        timeout=_positive_duration(raw.get("timeout", "30m"), f"{key}.timeout"),
        poll_interval=poll_interval,
        poll_max_interval=poll_max,
        max_data_age=parse_duration(raw.get("max_data_age", 0), f"{key}.max_data_age"),
    )


def _regex(value: object, key: str, flags: int = 0) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a regular expression (a string), got {shown(value)}")
    try:
        return re.compile(value, flags)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression {shown(value)}: {exc}") from None


def _customers(value: object) -> CustomerSettings:
    raw = mapping(value, CUSTOMERS, {
        "interval", "patch_services", "include", "exclude", "timeout", "max_series", "max_devices", "stale_after",
        "end_of_life_os",
    }, optional=True)
    interval = _positive_duration(raw.get("interval", "1h"), "customers.interval")
    services_raw = raw.get("patch_services", list(CustomerSettings.patch_services))
    if not isinstance(services_raw, list) or not services_raw:
        raise ConfigError("customers.patch_services: must be a non-empty list of service names")
    services = tuple(dict.fromkeys(_string(item, "customers.patch_services[]") for item in services_raw))
    return CustomerSettings(
        interval=interval,
        patch_services=services,
        include=_regex(raw.get("include"), "customers.include"),
        exclude=_regex(raw.get("exclude"), "customers.exclude"),
        timeout=_positive_duration(raw.get("timeout", "10m"), "customers.timeout"),
        max_series=_max_series(raw.get("max_series", CustomerSettings.max_series), "customers.max_series"),
        max_devices=_max_series(raw.get("max_devices", CustomerSettings.max_devices), "customers.max_devices"),
        stale_after=_positive_duration(raw.get("stale_after", "7d"), "customers.stale_after"),
        end_of_life_os=(_end_of_life_os(raw["end_of_life_os"], "customers.end_of_life_os")
                        if "end_of_life_os" in raw else DEFAULT_END_OF_LIFE_OS),
    )


def _end_of_life_os(value: object, key: str) -> tuple[EndOfLife, ...]:
    """A user's list of end-of-life rules (it replaces the default list; an empty list means none)."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of {{match, since, except}} entries, got {shown(value)}")
    rules = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        entry = mapping(item, where, {"match", "since", "except"})
        match = _regex(entry.get("match"), f"{where}.match", re.IGNORECASE)
        if match is None or entry.get("since") is None:
            raise ConfigError(f"{where}.{'match' if match is None else 'since'}: missing")
        rules.append(EndOfLife(match, _date(entry["since"], f"{where}.since"),
                               _regex(entry.get("except"), f"{where}.except", re.IGNORECASE)))
    return tuple(rules)


def _date(value: object, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise ConfigError(f"{key}: must be a date (YYYY-MM-DD), got a date and time {value.isoformat()}")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}: must be a date (YYYY-MM-DD), got {shown(value)}{_line(value)}") from None


def parse_config(data: object, env: Mapping[str, str]) -> Config:
    raw = mapping(data, "", {"ncentral", "reports", "storage", CUSTOMERS}, optional=True)
    if "ncentral" not in raw:
        raise ConfigError("ncentral: required")
    notices: list[Notice] = []
    ncentral = _ncentral(raw["ncentral"], env, notices)
    reports_raw = raw.get("reports")
    if reports_raw is None:
        reports: tuple[ReportSettings, ...] = (ReportSettings(name="all"),)
    elif not isinstance(reports_raw, list) or not reports_raw:
        raise ConfigError("reports: must be a non-empty list")
    else:
        reports = tuple(_report(item, f"reports[{index}]") for index, item in enumerate(reports_raw))
    seen: set[str] = set()
    for index, report in enumerate(reports):
        if report.name in seen:
            raise ConfigError(f"reports[{index}].name: duplicate report name {report.name!r}")
        seen.add(report.name)
        if report.interval < SENSIBLE_MIN_INTERVAL:
            notices.append(Notice(
                logging.WARNING,
                "report interval is below 15m: N-central generates each report in the background, so asking "
                "more often only adds load to the server",
                {"report": report.name, "interval_seconds": report.interval},
            ))
    storage = mapping(raw.get("storage") or {}, "storage", {"path"})
    storage_path = _string(storage["path"], "storage.path") if "path" in storage else None
    customers = _customers(raw[CUSTOMERS]) if CUSTOMERS in raw else None
    if customers is not None and CUSTOMERS in seen:
        index = next(i for i, report in enumerate(reports) if report.name == CUSTOMERS)
        raise ConfigError(f"reports[{index}].name: {CUSTOMERS!r} is the customer scan's name; choose another")
    if customers is not None and customers.interval < SENSIBLE_MIN_INTERVAL:
        notices.append(Notice(
            logging.WARNING, "customers.interval is below 15m: every scan makes one call per customer",
            {"interval_seconds": customers.interval},
        ))
    return Config(ncentral=ncentral, reports=reports, storage_path=storage_path, customers=customers,
                  notices=tuple(notices))


class _Located(str):
    """A scalar YAML could not build (`2025-13-01` looks like a date but is none): kept as text, with its
    line, so the key's own check names the key and the line."""

    line: int


def _line(value: object) -> str:
    return f" at line {value.line}" if isinstance(value, _Located) else ""


class _Loader(yaml.SafeLoader):
    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> object:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            text = _Located(node.value)
            text.line = node.start_mark.line + 1
            return text

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _check_aliases(node)
        return node


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# Values that aliases (`*name`) may add to a config beyond those written out. An anchor shared a few times
# (`<<: *defaults` in each report) adds hundreds; nine levels of nine aliases in 559 bytes would add
# 387 million, and the first message quoting such a value would take gigabytes and minutes to build.
MAX_ALIAS_EXPANSION = 10_000


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it by more than MAX_ALIAS_EXPANSION values (a "billion laughs"
    bomb) or refer to a node from inside itself; the node graph is walked once, each node sized once."""
    sizes: dict[int, int] = {}
    distinct = 0

    def size(node: yaml.Node) -> int:
        nonlocal distinct
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise yaml.composer.ComposerError(None, None, "an alias refers to a node from inside itself",
                                                  node.start_mark)
            return known
        sizes[id(node)] = -1
        distinct += 1
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        sizes[id(node)] = total
        if total - distinct > MAX_ALIAS_EXPANSION:
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) expand the document by more than {MAX_ALIAS_EXPANSION} values",
                node.start_mark,
            )
        return total

    size(root)


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`; raises ConfigError with one line naming the file or key."""
    try:
        raw = read_regular(path, MAX_CONFIG_FILE)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start, b"\n")
        raise ConfigError(
            f"{path}: cannot read config file: not UTF-8 at line {line}, column {column} (byte offset {exc.start}): "
            f"{exc.reason} 0x{raw[exc.start]:02x} (save the file as UTF-8)"
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except ReaderError as exc:
        # A character YAML does not allow (a control character): PyYAML gives its offset, not a mark.
        line, column = _position(text, exc.position, "\n")
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{path}: not valid YAML at line {line}, column {column}: character #x{code:04x} is not allowed "
            f"({exc.reason}; write it as an escape like \\x{code:02x} in a double-quoted string, if it is meant)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # PyYAML builds dates and numbers itself: `2025-02-30` raises a plain ValueError.
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(data, os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _position(text: str | bytes, offset: int, newline: Any) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text`."""
    line_start = text.rfind(newline, 0, offset) + 1
    return text.count(newline, 0, offset) + 1, offset - line_start + 1


def server_identity(settings: NCentralSettings) -> str:
    """Which N-central server and API user results come from: a digest of the URL (trailing `/` stripped)
    and of the JWT's subject (of the whole JWT if it has none). Never the token itself."""
    digest = hashlib.sha256()
    digest.update(settings.url.rstrip("/").encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(_token_identity(settings.token).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:24]


def _token_identity(token: str) -> str:
    """The JWT's `iss` and `sub` claims (the user, stable when the token is renewed) or the token's digest."""
    parts = token.split(".")
    if len(parts) == 3 and len(parts[1]) <= 8192:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("sub"), str) and claims["sub"]:
            return f"sub:{claims.get('iss')!s}:{claims['sub']}"
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
