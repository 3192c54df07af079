"""Logging set-up: logfmt-style text or one JSON object per line, with secrets scrubbed at the handler
(`ScrubFilter`, over the register in `exporter.scrub`)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from exporter.scrub import scrub

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else was passed with `extra=` and is a structured field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_TRACEBACKS = logging.Formatter()


class ScrubFilter(logging.Filter):
    """Takes every registered secret out of a record, whoever (ours, urllib3, …) logged it: the message
    with its arguments, the structured fields and the traceback. Runs on the handler, before any quoting
    (logfmt and JSON double a backslash, which would hide a token from `scrub`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):  # a malformed call: the formatter fails on it, and reports it
            record.msg, record.args = scrub(record.getMessage()), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                with contextlib.suppress(Exception):  # unprintable: the formatter fails on it, and reports it
                    setattr(record, key, _scrubbed(value))
        if record.exc_info:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _scrubbed(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    if type(value) is list:
        return [_scrubbed(item) for item in value]
    if type(value) is tuple:
        return tuple(_scrubbed(item) for item in value)
    if type(value) is dict:
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    return scrub(str(value))  # what the formatters would print of it anyway


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


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
        "msg": record.getMessage(),
        **_fields(record),
    }
    error = record.exc_text or (formatter.formatException(record.exc_info) if record.exc_info else None)
    if error:
        entry["error"] = error
    return entry


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record, self)
        return " ".join(f"{key}={_logfmt(value)}" for key, value in entry.items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_entry(record, self), ensure_ascii=False, default=str)


def handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `fmt` lines to `stream` (stderr), with every registered secret scrubbed."""
    made = logging.StreamHandler(stream if stream is not None else sys.stderr)
    made.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    made.addFilter(ScrubFilter())
    return made


def setup(level: str, fmt: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(fmt)]
    root.setLevel(level.upper())
    # APScheduler's per-run chatter ("Running job …") duplicates our own run lines, and its warning that a
    # run was skipped because the previous one still runs is the intended behaviour (max_instances=1).
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR)
