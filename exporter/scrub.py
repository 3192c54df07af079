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
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

# The JWT stays for the process's life; access/refresh tokens expire (refresh: 25 h by default), so the
# newest few dozen cover every token still worth anything without growing for ever.
_permanent: set[str] = set()
_recent: deque[str] = deque(maxlen=64)
_secrets_lock = threading.Lock()
# The compiled pattern and the length of the longest spelling it matches, built once per change of secrets.
_pattern_cache: dict[str, tuple[re.Pattern[str] | None, int]] = {}


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


def _pattern() -> tuple[re.Pattern[str] | None, int]:
    with _secrets_lock:
        if "" not in _pattern_cache:
            spellings = {form for secret in (*_permanent, *_recent) for form in _spellings(secret)}
            # Longest first, one pass: a short secret inside a longer one cannot leave a part of the longer.
            ordered = sorted(spellings, key=lambda form: (-len(form), form))
            pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            _pattern_cache[""] = (pattern, len(ordered[0]) if ordered else 0)
        return _pattern_cache[""]


def scrub(text: str) -> str:
    """`text` with every registered secret, plain or in a quoted spelling, replaced by `<redacted>`."""
    pattern = _pattern()[0]
    return pattern.sub("<redacted>", text) if pattern is not None else text


def clipped(text: str, limit: int) -> str:
    """`text` scrubbed, then cut to at most `limit` characters (ending in `...` when cut)."""
    text = scrub(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: object, limit: int = 40) -> str:
    """A value as an error message quotes it: its repr, scrubbed and cut short. A string is scrubbed before
    quoting too (repr doubles a backslash, so a token would no longer match). The repr is built only as far
    as the cut needs, so quoting a megabyte of config (or a list of a thousand such strings) costs what
    quoting `limit` characters does; each string is kept long enough that a secret starting before the cut
    is whole when it is scrubbed."""
    return clipped(_repr_prefix(value, limit + 3, _pattern()[1]), limit)


def _repr_prefix(value: object, budget: int, margin: int) -> str:
    """repr(value) when it is at most `budget` characters; else a text at least `budget` long that starts as
    repr(value) does, with every string in it scrubbed. `margin` is the longest secret spelling."""
    keep = max(budget, 0) + margin  # a budget spent by what came before is 0, never a slice from the end
    if isinstance(value, str):
        return repr(scrub(value[:keep]))
    if isinstance(value, bytes | bytearray):
        return repr(value[:keep])
    if isinstance(value, Mapping):
        return _items_prefix(value.items(), "{}", budget, margin, pairs=True)
    if isinstance(value, list | tuple) or (isinstance(value, set) and value):  # YAML's !!set is a set
        brackets = "[]" if isinstance(value, list) else "()" if isinstance(value, tuple) else "{}"
        return _items_prefix(value, brackets, budget, margin)
    return repr(value)


def _items_prefix(items: Iterable[Any], brackets: str, budget: int, margin: int, *, pairs: bool = False) -> str:
    """The repr prefix of a collection's items in `brackets`; `pairs` for a mapping's (key, value) items."""
    text = brackets[0]
    count = 0
    for item in items:
        if len(text) > budget:
            return text
        text += ", " if count else ""
        count += 1
        if pairs:
            text += _repr_prefix(item[0], budget - len(text), margin) + ": "
            text += _repr_prefix(item[1], budget - len(text), margin)
        else:
            text += _repr_prefix(item, budget - len(text), margin)
    return text + ("," if brackets == "()" and count == 1 else "") + brackets[1]  # repr((x,)) is "(x,)"


def header_safe(token: object) -> TypeGuard[str]:
    """A token usable as it is in an HTTP header: printable ASCII, no whitespace. Anything else would be
    mangled there (or fail to encode), and quoted in error messages in a form the scrubber could not
    recognise."""
    return (isinstance(token, str) and bool(token) and token.isascii() and token.isprintable()
            and not any(c.isspace() for c in token))
