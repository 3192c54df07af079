from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import http.server
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from test_web import make_certificate

from exporter.client import USER_AGENT, NCentralClient, on_the_wire, retry_after_seconds
from exporter.config import NCentralSettings
from exporter.errors import AuthFailed, ConnectionFailed, HTTPError, InvalidResponse, RateLimited, Stopped
from exporter.report import COMPLETED, IN_PROGRESS
from exporter.simulator import Simulator


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(sim: Simulator, clock: FakeClock | None = None, **overrides: object) -> NCentralClient:
    settings = {"url": sim.url, "token": sim.jwt, "request_timeout": 2.0, "retry_backoff": 0.01, **overrides}
    if clock is None:
        return NCentralClient(NCentralSettings(**settings))  # type: ignore[arg-type]
    return NCentralClient(
        NCentralSettings(**settings), sleep=clock.sleep, monotonic=clock.monotonic  # type: ignore[arg-type]
    )


def report_calls(sim: Simulator) -> list[str]:
    """The endpoints called, without the server-info reads that follow each authentication."""
    return [r.endpoint for r in sim.requests if not r.endpoint.startswith("server_info")]


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_authenticates_submits_and_polls(sim: Simulator) -> None:
    client = client_for(sim)
    report_id = client.submit({"startDate": "2025-08-01"}, deadline())
    result = client.poll(report_id, deadline())
    assert result.status == COMPLETED
    assert result.data is not None
    auth = sim.requests[0]
    assert (auth.endpoint, auth.headers["Authorization"]) == ("authenticate", f"Bearer {sim.jwt}")
    access = sim.requests[1].headers["Authorization"]
    assert access.startswith("Bearer ")
    assert access != f"Bearer {sim.jwt}"
    assert all(r.headers["User-Agent"] == USER_AGENT for r in sim.requests)
    assert sim.count("authenticate") == 1  # the access token is reused


def test_in_progress_until_generated(sim: Simulator) -> None:
    sim.set_generation_time(30)
    client = client_for(sim)
    report_id = client.submit({"startDate": "2025-08-01"}, deadline())
    assert client.poll(report_id, deadline()).status == IN_PROGRESS


def test_refreshes_the_access_token_before_it_expires() -> None:
    # 100 s access tokens: refreshed at 80 % of their life, so no call ever meets an expired token.
    clock = FakeClock()
    with Simulator(jwt="refresh-jwt-0123456789", access_expiry=100, clock=clock.monotonic) as sim:
        client = client_for(sim, clock)
        report_id = client.submit({"startDate": "2025-08-01"}, clock.now + 1000)
        clock.now += 79
        client.poll(report_id, clock.now + 1000)
        assert report_calls(sim) == ["authenticate", "submit", "poll"]
        clock.now += 2
        client.poll(report_id, clock.now + 1000)
        endpoints = report_calls(sim)
        assert endpoints == ["authenticate", "submit", "poll", "refresh", "poll"]
        refresh = next(r for r in sim.requests if r.endpoint == "refresh")
        assert refresh.headers["Content-Type"] == "text/plain"
        assert "Authorization" not in refresh.headers
        assert refresh.body.decode()  # the refresh token itself is the body


def test_failed_refresh_falls_back_to_authenticate() -> None:
    clock = FakeClock()
    with Simulator(jwt="refresh-jwt-0123456789", access_expiry=100, clock=clock.monotonic) as sim:
        client = client_for(sim, clock)
        report_id = client.submit({"startDate": "2025-08-01"}, clock.now + 1000)
        sim.add_fault("401", endpoint="refresh")
        clock.now += 81
        assert client.poll(report_id, clock.now + 1000).status == COMPLETED
        assert report_calls(sim) == ["authenticate", "submit", "refresh", "authenticate", "poll"]


def test_401_authenticates_again_once_and_retries(sim: Simulator) -> None:
    client = client_for(sim)
    report_id = client.submit({"startDate": "2025-08-01"}, deadline())
    sim.revoke_tokens()
    assert client.poll(report_id, deadline()).status == COMPLETED
    assert report_calls(sim) == ["authenticate", "submit", "poll", "authenticate", "poll"]


def test_401_after_fresh_authentication_is_an_auth_failure(sim: Simulator) -> None:
    client = client_for(sim)
    sim.add_fault("401", endpoint="submit", count=2)
    with pytest.raises(AuthFailed):
        client.submit({"startDate": "2025-08-01"}, deadline())
    assert report_calls(sim) == ["authenticate", "submit", "authenticate", "submit"]


def test_bad_jwt_is_an_auth_failure_without_retries(sim: Simulator) -> None:
    client = NCentralClient(NCentralSettings(url=sim.url, token="wrong-jwt-0123456789", retry_backoff=0.01))
    with pytest.raises(AuthFailed, match="invalid or expired"):
        client.submit({"startDate": "2025-08-01"}, deadline())
    assert sim.count("authenticate") == 1


def test_429_honours_retry_after(sim: Simulator) -> None:
    clock = FakeClock()
    client = client_for(sim, clock)
    sim.add_fault("429", endpoint="submit", retry_after="7")
    client.submit({"startDate": "2025-08-01"}, clock.now + 60)
    assert clock.sleeps == [7.0]
    assert sim.count("submit") == 2


def test_429_without_retry_after_backs_off_like_n_able_recommends(sim: Simulator) -> None:
    clock = FakeClock()
    client = client_for(sim, clock, retry_backoff=2.0, retries=5)
    sim.add_fault("429", endpoint="submit", count=5)
    client.submit({"startDate": "2025-08-01"}, clock.now + 600)
    assert clock.sleeps == [2.0, 5.0, 10.0, 20.0, 40.0]


def test_429_gives_up_after_the_retries(sim: Simulator) -> None:
    client = client_for(sim, retries=2)
    sim.add_fault("429", endpoint="submit", count=None)
    with pytest.raises(RateLimited):
        client.submit({"startDate": "2025-08-01"}, deadline())
    assert sim.count("submit") == 3


def test_submit_is_not_retried_after_a_500(sim: Simulator) -> None:
    # The report may have been created: a second POST could start a second report.
    client = client_for(sim)
    sim.add_fault("500", endpoint="submit")
    with pytest.raises(HTTPError):
        client.submit({"startDate": "2025-08-01"}, deadline())
    assert sim.count("submit") == 1


def test_submit_is_retried_after_a_503(sim: Simulator) -> None:
    client = client_for(sim)
    sim.add_fault("503", endpoint="submit")
    client.submit({"startDate": "2025-08-01"}, deadline())
    assert sim.count("submit") == 2


def test_poll_is_retried_after_5xx(sim: Simulator) -> None:
    client = client_for(sim)
    report_id = client.submit({"startDate": "2025-08-01"}, deadline())
    sim.add_fault("500", endpoint="poll", count=2)
    assert client.poll(report_id, deadline()).status == COMPLETED
    assert sim.count("poll") == 3


def test_connection_refused_is_a_connection_failure() -> None:
    with Simulator() as sim:
        url = sim.url
    client = NCentralClient(NCentralSettings(url=url, token="jwt-0123456789", retries=1, retry_backoff=0.01))
    with pytest.raises(ConnectionFailed, match="refused"):
        client.submit({"startDate": "2025-08-01"}, deadline())


def test_body_over_the_cap_is_invalid(sim: Simulator) -> None:
    client = client_for(sim, max_response_size=1024)
    report_id = client.submit({"startDate": "2025-08-01"}, deadline())
    sim.add_fault("huge", endpoint="poll")
    with pytest.raises(InvalidResponse, match="cap"):
        client.poll(report_id, deadline())


def test_error_body_excerpt_is_short_and_has_no_secret(sim: Simulator) -> None:
    client = client_for(sim)
    sim.add_fault("html", endpoint="submit")
    with pytest.raises(InvalidResponse) as error:
        client.submit({"startDate": "2025-08-01"}, deadline())
    assert "not JSON (text/html" in error.value.message
    assert "N-central - Login" in error.value.message
    assert len(error.value.message) < 400
    assert sim.jwt not in str(error.value)


def test_retries_stop_at_the_deadline(sim: Simulator) -> None:
    clock = FakeClock()
    client = client_for(sim, clock, retries=10, retry_backoff=1.0)
    sim.add_fault("503", endpoint="submit", count=None)
    with pytest.raises(HTTPError):
        client.submit({"startDate": "2025-08-01"}, clock.now + 15.0)
    assert clock.sleeps == [1.0, 2.5, 5.0]  # the next, 10 s, would end past the deadline
    assert sim.count("submit") == 4


@pytest.mark.parametrize("token", [None, "tok\u20acn"], ids=["two-lines", "not-ascii"])
def test_tokens_that_cannot_go_in_a_header_are_refused(sim: Simulator, token: str | None) -> None:
    client = client_for(sim)
    sim.add_fault("bad_tokens", endpoint="authenticate", value=token)
    with pytest.raises(InvalidResponse, match="no usable access/refresh token pair"):
        client.submit({"startDate": "2025-08-01"}, deadline())


def test_429_honours_retry_after_as_an_http_date(sim: Simulator) -> None:
    clock = FakeClock()
    client = client_for(sim, clock)
    # HTTP-dates have whole seconds: 30 s ahead of the last whole second is 29 to 30 s from now.
    when = dt.datetime.fromtimestamp(int(time.time()) + 30, dt.UTC)
    sim.add_fault("429", endpoint="submit", retry_after=email.utils.format_datetime(when, usegmt=True))
    client.submit({"startDate": "2025-08-01"}, clock.now + 60)
    assert len(clock.sleeps) == 1
    assert 20.0 < clock.sleeps[0] <= 30.0  # generous below: only a stalled test run gets near it
    assert sim.count("submit") == 2


@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("Thu, 01 Jan 1970 00:00:50 GMT", 0.0),  # a date in the past: retry at once
    ("Thu, 01 Jan 1970 00:01:40 GMT", 0.0),
    ("Thu, 01 Jan 1970 00:03:20 GMT", 100.0),  # the obsolete formats are HTTP-dates too:
    ("Thursday, 01-Jan-70 00:03:20 GMT", 100.0),
    ("Thu Jan  1 00:03:20 1970", 100.0),
    (None, None),
    ("", None),
    ("soon", None),
    ("-5", None),
    ("7.5", None),
    ("\u00b2", None),  # a digit to str.isdigit, not to HTTP
    ("Thu, 01 Jan 1970 00:03:20 GMT" + " " * 100, 100.0),
    ("Thu, 01 Jan 1970 00:03:20 GMT" + "x" * 100, None),  # longer than any HTTP-date
    ("Thu, 32 Jan 1970 00:03:20 GMT", None),
    ("Thu, 01 Jan 1970 00:03:20 G\u00c9T", None),
])
def test_retry_after_seconds_reads_delays_and_http_dates(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=100.0) == expected


def test_implausible_token_lifetimes_are_refused(sim: Simulator) -> None:
    for access, refresh in ((0, 90000), (3600, -1), (10**9, 90000), (3600, 10**12)):
        sim.access_expiry, sim.refresh_expiry = access, refresh
        client = client_for(sim, retries=0)
        with pytest.raises(InvalidResponse, match="authenticate answer carries implausible token lifetimes"):
            client.submit({"startDate": "2025-08-01"}, deadline())
    assert sim.count("submit") == 0



def test_a_netrc_entry_for_the_host_does_not_replace_the_bearer_token(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests would send a ~/.netrc login for the host as basic auth in place of the access token."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client_for(sim).get("/api/devices?pageSize=5", deadline())
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in sim.requests)


class _ForwardProxy(http.server.ThreadingHTTPServer):
    """An HTTP forward proxy on loopback that passes each request on and keeps the request lines it saw."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def forward(self) -> None:
                proxy.seen.append(f"{self.command} {self.path}")
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(target.netloc, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"proxy-connection", "host"}}
                upstream.request(self.command, urllib.parse.urlunsplit(("", "", *target[2:])), body or None, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = forward

        super().__init__(("127.0.0.1", 0), Handler)


def test_the_proxy_environment_is_honoured(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is read once, when the client is made; NO_PROXY naming the host turns it off."""
    with _ForwardProxy() as proxy:
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
            client_for(sim).get("/api/devices?pageSize=5", deadline())
            assert f"GET {sim.url}/api/devices?pageSize=5" in proxy.seen
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            seen = len(proxy.seen)
            client_for(sim).get("/api/devices?pageSize=5", deadline())
            assert len(proxy.seen) == seen
        finally:
            proxy.shutdown()
            thread.join(10)


def test_the_ca_bundle_of_the_environment_applies_unless_ca_bundle_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTS_CA_BUNDLE trusts an in-house CA as it does for any requests-based tool; ncentral.ca_bundle
    wins over it."""
    cert, key = make_certificate(tmp_path)
    with Simulator(tls=(str(cert), str(key))) as sim:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        client_for(sim).get("/api/devices?pageSize=5", deadline())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(ConnectionFailed, match="TLS error"):
            client_for(sim, retries=0).get("/api/devices?pageSize=5", deadline())
        client_for(sim, ca_bundle=str(cert)).get("/api/devices?pageSize=5", deadline())


def test_calls_inside_on_the_wire_hold_the_gate_only_while_on_the_wire(sim: Simulator) -> None:
    """Three threads, two slots: N-central, which would take more, never sees more than two calls at once."""
    sim.set_latency(0.05)
    sim.set_concurrency_limit(10)
    client = client_for(sim)
    client.get("/api/devices?pageSize=1", deadline())  # authenticated before the threads start
    gate = threading.BoundedSemaphore(2)
    sim.reset_max_in_flight()
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            with on_the_wire(gate):
                for _ in range(4):
                    client.get("/api/devices?pageSize=1", deadline())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sim.max_in_flight == 2


def test_a_call_whose_check_fails_once_it_has_its_slot_is_not_sent(sim: Simulator) -> None:
    client = client_for(sim)
    client.get("/api/devices?pageSize=1", deadline())
    before = sim.count("devices")

    def stopped() -> None:
        raise Stopped

    with on_the_wire(threading.BoundedSemaphore(1), stopped), pytest.raises(Stopped):
        client.get("/api/devices?pageSize=1", deadline())
    assert sim.count("devices") == before
