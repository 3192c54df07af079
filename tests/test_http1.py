"""The HTTP/1.1 framing at its edges: request heads parsed strictly, answers framed with the standard reason
phrases."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from exporter import http1


def test_a_head_parses_into_method_path_version_and_lower_case_headers() -> None:
    request = http1.parse_head(b"GET http://x:1/metrics?a=b HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b")
    assert (request.method, request.path, request.version) == ("GET", "/metrics", "HTTP/1.1")
    assert request.headers == {"host": "x", "accept": "a, b"}
    assert not request.wants_close
    assert http1.parse_head(b"GET / HTTP/1.0\r\nHost: x").wants_close
    assert http1.parse_head(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close").wants_close


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /", 400),
    (b"GET  / HTTP/1.1", 400),
    (b"G3T / HTTP/1.1", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/1.1\r\nno colon", 400),
    (b"GET / HTTP/1.1\r\n folded: header", 400),
    (b"GET / HTTP/1.1\r\nName : value", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1", 400),
])
def test_malformed_heads_are_refused_with_the_answer_to_give(head: bytes, status: int) -> None:
    with pytest.raises(http1.BadRequest) as refused:
        http1.parse_head(head)
    assert refused.value.response.status == status
    assert refused.value.response.close


@pytest.mark.parametrize("status", [200, 400, 401, 404, 405, 411, 413, 431, 500, 503, 505])
def test_answers_carry_the_standard_reason_phrase(status: int) -> None:
    head = http1.head(http1.text(status, "x\n"), close=True, headers={"X-Frame-Options": "deny"})
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"
    assert "Content-Length: 2" in lines and "Connection: close" in lines and "X-Frame-Options: deny" in lines
    assert head.endswith(b"\r\n\r\n")
