"""Label values: N-central's names turned into Prometheus-style snake_case."""

from __future__ import annotations

import re
from functools import lru_cache

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# The vendor's own misspellings, so a label value does not change when N-central fixes them.
_SPELLING = {"defination": "definition"}


@lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """`approvedForInstall` and `Approved for Install` both become `approved_for_install`."""
    words = _NON_WORD.split(_CAMEL_BOUNDARY.sub("_", name.strip()).lower())
    return "_".join(_SPELLING.get(word, word) for word in words if word) or "unknown"
