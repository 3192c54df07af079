"""The log handler: secrets scrubbed by its filter whoever logs; a bad log call never raised into the code."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from exporter import logs, scrub
from exporter.report import ApprovalCount

TOKEN = "test-logs-token-\\with\"quotes-4711"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    logger = logging.getLogger("urllib3.test_logs")  # another library's logger, as urllib3's would be
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_secrets_are_scrubbed_from_every_part_of_a_record(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    scrub.register_secret(TOKEN)
    logger.warning("sent %r", {"Authorization": f"Bearer {TOKEN}"},
                   extra={"count": 3, "path": ["a", TOKEN], "row": ApprovalCount("Laptops", TOKEN, 2)})
    entry = json.loads(stream.getvalue())
    assert TOKEN not in stream.getvalue() and "with" not in stream.getvalue()
    assert entry["msg"] == "sent {'Authorization': 'Bearer <redacted>'}"
    assert entry["count"] == 3  # numbers stay numbers
    assert entry["path"] == ["a", "<redacted>"]
    assert entry["row"] == "ApprovalCount(device_class='Laptops', approval_status='<redacted>', count=2)"


def test_the_filter_never_raises_into_the_logging_caller() -> None:
    """A malformed call (or an unprintable field) is left to the formatter, which fails on it inside the
    handler's error reporting: the filter runs outside it, so an exception there would reach the caller."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    record = logging.LogRecord("x", logging.ERROR, "", 0, "%d runs", ("not a number",), None)
    record.field = Unprintable()
    assert logs.ScrubFilter().filter(record)
    assert (record.msg, record.args) == ("%d runs", ("not a number",))


class Unquotable:
    """A value whose repr must never be built: quoting a list that holds it after enough text stops first."""

    def __repr__(self) -> str:
        raise AssertionError("repr built beyond the cut")


@pytest.mark.parametrize("value", [
    ("x",), ("a, b",), (1, 2), (), {"a": {"b": [1, (2,)]}}, {1, 2}, set(), [None, True, 1.5, b"x"], {}, "it's",
])
def test_a_short_value_is_quoted_as_its_repr(value: object) -> None:
    assert scrub.shown(value, 1000) == repr(value)


def test_quoting_a_huge_value_builds_only_the_text_it_shows() -> None:
    """A config value can be a megabyte of text or a list of a thousand such strings: the message quoting
    it is one short line, built without the repr of the whole."""
    assert scrub.shown(["x" * 50, Unquotable()]) == "['" + "x" * 35 + "..."
    assert scrub.shown({"key": "v" * 50, "next": Unquotable()}, 30) == "{'key': '" + "v" * 18 + "..."
    assert scrub.shown(["A" * 1_000_000] * 100) == "['" + "A" * 35 + "..."
    taken: list[int] = []

    class Sliced(str):
        def __getitem__(self, key: Any) -> str:
            taken.append(key.stop)
            return str.__getitem__(self, key)

    # The key uses up the budget: the value after it is cut to nothing (plus the secrets' margin), not
    # to a slice counted from its end.
    assert scrub.shown({"k" * 100: Sliced("v" * 1_000_000)}) == "{'" + "k" * 35 + "..."
    assert taken and all(0 <= stop < 1000 for stop in taken), taken
    assert scrub.shown(b"\0" * 1_000_000, 20) == "b'" + "\\x00" * 3 + "\\x0..."


def test_a_secret_reaching_past_the_cut_is_scrubbed_whole(logged: tuple[logging.Logger, io.StringIO]) -> None:
    scrub.register_secret(TOKEN)
    for start in range(0, 45):
        quoted = scrub.shown(["x" * start + TOKEN + "y" * 1000], 40)
        assert len(quoted) <= 40
        assert not any(TOKEN[:length] in quoted for length in range(4, len(TOKEN))), quoted
