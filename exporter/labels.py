"""Label values: N-central's text checked fit for one, and its names turned into Prometheus-style snake_case."""

from __future__ import annotations

import re
from functools import lru_cache

from exporter.errors import InvalidResponse
from exporter.scrub import scrub, shown

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# The vendor's own misspellings, so a label value does not change when N-central fixes them.
_SPELLING = {"defination": "definition"}


@lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """`approvedForInstall` and `Approved for Install` both become `approved_for_install`."""
    words = _NON_WORD.split(_CAMEL_BOUNDARY.sub("_", name.strip()).lower())
    return "_".join(_SPELLING.get(word, word) for word in words if word) or "unknown"


def label_value(value: object, where: str) -> str:
    """Upstream text that can be a label value: a non-empty string of valid Unicode, with any secret in it
    scrubbed (a server that echoes a token must not put it on /metrics, the landing page or the state
    file)."""
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"{where}: expected a non-empty string, got {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: no label value can carry it
        raise InvalidResponse(f"{where}: not valid Unicode text: {shown(value)}") from None
    return scrub(value)
