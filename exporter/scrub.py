"""The process-wide register of secrets (JWT, access and refresh tokens) and the scrubbing that keeps them
out of text: applied once at the log handler (`logs.ScrubFilter`) and once in `UpstreamError`'s
constructor; `shown` and `clipped` scrub before they cut, so no part of a token survives a cut. A token
must be `header_safe` (one printable word) for any of this to recognise it wherever it is quoted."""

from __future__ import annotations

import html
import json
import re
import threading
from collections import deque
from typing import TypeGuard

# The JWT stays for the process's life; access/refresh tokens expire (refresh: 25 h by default), so the
# newest few dozen cover every token still worth anything without growing for ever.
_permanent: set[str] = set()
_recent: deque[str] = deque(maxlen=64)
_secrets_lock = threading.Lock()
_pattern_cache: dict[str, re.Pattern[str] | None] = {}


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


def clipped(text: str, limit: int) -> str:
    """`text` scrubbed, then cut to at most `limit` characters (ending in `...` when cut)."""
    text = scrub(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: object, limit: int = 40) -> str:
    """A value as an error message quotes it: its repr, scrubbed and cut short. A string is scrubbed before
    quoting too (repr doubles a backslash, so a token would no longer match)."""
    return clipped(repr(scrub(value) if isinstance(value, str) else value), limit)


def header_safe(token: object) -> TypeGuard[str]:
    """A token usable as it is in an HTTP header: printable ASCII, no whitespace. Anything else would be
    mangled there (or fail to encode), and quoted in error messages in a form the scrubber could not
    recognise."""
    return (isinstance(token, str) and bool(token) and token.isascii() and token.isprintable()
            and not any(c.isspace() for c in token))
