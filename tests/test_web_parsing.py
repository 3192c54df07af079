"""The web front's small parsers at their edges: `--web.listen-address` and `Accept-Encoding`."""

from __future__ import annotations

import pytest

from exporter import web


@pytest.mark.parametrize(("value", "expected"), [
    (":10120", ("", 10120)),
    ("127.0.0.1:10120", ("127.0.0.1", 10120)),
    ("[::1]:10120", ("::1", 10120)),
    ("[::]:0", ("::", 0)),
    ("localhost:65535", ("localhost", 65535)),
    ("127.0.0.1:010120", ("127.0.0.1", 10120)),
])
def test_listen_addresses_as_the_go_exporters_take_them(value: str, expected: tuple[str, int]) -> None:
    assert web.parse_listen_address(value) == expected


@pytest.mark.parametrize("value", [
    "", "10120", "127.0.0.1", "127.0.0.1:", ":65536", ":-1", ":+80", ": 80", ":80 ", ":0x50", ":8O",
    ":\u00b2",  # a digit to str.isdigit that int() refuses
    ":\u0661\u0660",  # Arabic-Indic "10": int() reads it, HTTP ports are ASCII
    ":" + "9" * 5000,  # more digits than int() converts
])
def test_bad_listen_addresses_name_the_flag(value: str) -> None:
    with pytest.raises(ValueError, match=r"^--web\.listen-address: expected \[HOST\]:PORT, got "):
        web.parse_listen_address(value)


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True),
    ("GZIP", True),
    ("x-gzip", True),
    ("deflate, gzip", True),
    (" , ,gzip ;q=1 ", True),
    ("gzip;q=0.001", True),
    ("br;q=1.0, gzip;q=0.8", True),
    ("", False),
    ("identity", False),
    ("deflate, br", False),
    ("gzip;q=0", False),
    ("gzip; q=0.0", False),
    ("gzip;Q=0", False),
    ("gzip;q=abc", False),  # an unreadable q-value counts as 0
    ("gzip;q=-1", False),
    ("identity, gzip;q=0", False),
    ("gzipped", False),
])
def test_accepts_gzip_at_the_edges(header: str, expected: bool) -> None:
    assert web.accepts_gzip(header) is expected
