"""Logging set-up: logfmt-style text or one JSON object per line, with secrets scrubbed at the handler."""

from __future__ import annotations

import html
import json
import logging
import re
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

# The JWT stays for the process's life; access/refresh tokens expire (refresh: 25 h by default), so the
# newest few dozen cover every token still worth anything without growing for ever.
_permanent: set[str] = set()
_recent: deque[str] = deque(maxlen=64)
_secrets_lock = threading.Lock()
# Attributes every LogRecord has; anything else was passed with `extra=` and is a structured field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def register_secret(secret: str, *, permanent: bool = False) -> None:
    """Never let this string reach a log line or an error message, whoever (ours, urllib3, …) writes it.
    Every token counts, however short: N-central's are long, but a short one is still a secret."""
    if not secret:
        return
    with _secrets_lock:
        if permanent:
            _permanent.add(secret)
        elif secret not in _recent:
            _recent.append(secret)
        _pattern_cache.clear()


# The quoted forms a secret takes in JSON, repr() and HTML text: `\` doubled, quotes escaped, `&` as `&amp;`.
def _spellings(secret: str) -> set[str]:
    return {
        secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1],
        html.escape(secret), html.escape(secret, quote=False),
    } - {""}


_pattern_cache: dict[str, re.Pattern[str] | None] = {}


def _pattern() -> re.Pattern[str] | None:
    with _secrets_lock:
        if "" not in _pattern_cache:
            spellings = {form for secret in (*_permanent, *_recent) for form in _spellings(secret)}
            # Longest first, one pass: a short secret inside a longer one cannot leave a part of the longer.
            ordered = sorted(spellings, key=lambda form: (-len(form), form))
            _pattern_cache[""] = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        return _pattern_cache[""]


def scrub(text: str) -> str:
    """`text` with every registered secret, plain or in a quoted spelling, replaced by `<redacted>`."""
    pattern = _pattern()
    return pattern.sub("<redacted>", text) if pattern is not None else text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    # Scrubbed before any quoting: logfmt and JSON double a backslash, which would hide a token from `scrub`.
    return {
        key: scrub(value) if isinstance(value, str) else value
        for key, value in vars(record).items()
        if key not in _STANDARD
    }


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _entry(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "time": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": scrub(record.getMessage()),
        **_fields(record),
    }
    if record.exc_info:
        entry["error"] = scrub(formatter.formatException(record.exc_info))
    return entry


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record, self)
        return scrub(" ".join(f"{key}={_logfmt(value)}" for key, value in entry.items()))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(json.dumps(_entry(record, self), ensure_ascii=False, default=str))


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler's per-run chatter ("Running job …") duplicates our own run lines, and its warning that a
    # run was skipped because the previous one still runs is the intended behaviour (max_instances=1).
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR)
