"""The HTTP front as real clients meet it: curl and Chromium, OpenMetrics for Prometheus, keep-alive, HTTP
manners, and resources that stay bounded under idle, slow and abusive connections."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import gc
import gzip
import http.client
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from conftest import MakeApp
from cryptography import x509
from helpers import (
    REPO,
    ExporterProcess,
    child_env,
    config_file,
    free_port,
    parse_samples,
    run_command,
    sample,
    wait_for,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from test_web import make_certificate

from exporter import web
from exporter.app import Exporter
from exporter.config import Config, NCentralSettings
from exporter.report import ApprovalCount, ReportData
from exporter.reports import ReportResult, ReportSettings
from exporter.simulator import Simulator
from exporter.store import CollectionState
from exporter.webconfig import WebConfig, load_web_config

pytestmark = pytest.mark.long

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    """One demo exporter for the read-only tests of this module, ready (its report has run)."""
    exporter = ExporterProcess(tmp_path_factory.mktemp("demo"), "--demo")
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        yield exporter
    finally:
        exporter.stop()


def openmetrics_families(text: str) -> list[Metric]:
    """prometheus_client's OpenMetrics parser: it raises on anything the format does not allow."""
    return list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]


def report_series(text: str) -> set[str]:
    return {line.split("{")[0] for line in text.splitlines() if line.startswith("ncentral_patch_approvals")}


# --- real clients ----------------------------------------------------------------------------------------


def test_curl_compressed_reads_the_whole_gzip_answer(demo: ExporterProcess) -> None:
    result = subprocess.run(["curl", "--silent", "--show-error", "--fail", "--compressed", "--include",
                             f"{demo.url}/metrics"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr  # curl exits 23 on a second gzip member
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    assert re.search(r"^content-encoding: gzip$", head, re.IGNORECASE | re.MULTILINE), head
    assert report_series(body) == {"ncentral_patch_approvals"}
    assert "ncentral_patch_exporter_build_info" in body  # the per-scrape part, after the cached one
    assert "process_cpu_seconds_total" in body


def test_headless_chromium_shows_the_report_series(demo: ExporterProcess, tmp_path: Path) -> None:
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", f"{demo.url}/metrics"],
        capture_output=True, text=True, timeout=90, check=False,
    ).stdout
    # Chromium asks for gzip and stops at the end of the first member: the report part must be in it, and
    # so must the live part after it.
    assert "ncentral_patch_approvals{" in dom
    assert "ncentral_patch_exporter_build_info" in dom


def test_gzip_is_one_member_with_vary_on_every_answer(demo: ExporterProcess) -> None:
    zipped = requests.get(f"{demo.url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    assert zipped.headers["Content-Encoding"] == "gzip"
    raw = zipped.raw.read()
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = decoder.decompress(raw)
    assert decoder.eof and decoder.unused_data == b""
    assert gzip.decompress(raw) == text
    plain = demo.get("/metrics", headers={"Accept-Encoding": "identity"})
    for answer in (zipped, plain):
        assert "Accept-Encoding" in answer.headers["Vary"]
    assert report_series(text.decode()) == report_series(plain.text) == {"ncentral_patch_approvals"}


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_openmetrics_when_prometheus_asks_for_it(demo: ExporterProcess, encoding: str) -> None:
    answer = demo.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": encoding})
    assert answer.headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    assert answer.headers.get("Content-Encoding") == (None if encoding == "identity" else "gzip")
    assert answer.text.endswith("# EOF\n") and answer.text.count("# EOF") == 1
    families = {family.name: family for family in openmetrics_families(answer.text)}  # parses, or raises
    runs = families["ncentral_patch_report_runs"]  # a counter: the family without _total, samples with it
    assert runs.type == "counter"
    assert {s.name for s in runs.samples} == {"ncentral_patch_report_runs_total"}
    assert any(s.value > 0 for s in families["ncentral_patch_approvals"].samples)
    assert "process_cpu_seconds" in families
    text = demo.get("/metrics", headers={"Accept": "text/plain;version=0.0.4"})
    assert text.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in text.text


def test_accept_negotiation() -> None:
    assert web.wants_openmetrics(PROMETHEUS_ACCEPT)
    assert web.wants_openmetrics("application/openmetrics-text")
    assert not web.wants_openmetrics("")
    assert not web.wants_openmetrics("*/*")
    assert not web.wants_openmetrics("application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4")
    assert not web.wants_openmetrics("text/plain;q=1,application/openmetrics-text;version=1.0.0;q=0.2")
    assert not web.wants_openmetrics("application/openmetrics-text;q=0")
    assert web.accepts_gzip("gzip, deflate, br")
    assert web.accepts_gzip("br;q=1.0, gzip;q=0.8")
    assert not web.accepts_gzip("gzip;q=0")
    assert not web.accepts_gzip("identity")


def test_keep_alive_and_pipelined_requests(demo: ExporterProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=10)
    try:
        sockets = set()
        for path in ("/metrics", "/-/healthy", "/", "/metrics"):
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200 and not answer.will_close
            sockets.add(id(connection.sock))
        assert len(sockets) == 1  # one connection served them all
    finally:
        connection.close()
    with socket.create_connection(("127.0.0.1", demo.port), timeout=10) as raw:
        raw.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n")
        answers = b""
        while chunk := raw.recv(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200 OK") == 2 and answers.count(b"Healthy") == 2


def test_wrong_methods_get_405_with_allow(demo: ExporterProcess) -> None:
    cases = [("POST", "/-/healthy", "GET, HEAD"), ("GET", "/-/reload", "POST"), ("PUT", "/metrics", "GET, HEAD"),
             ("DELETE", "/", "GET, HEAD"), ("POST", "/-/ready", "GET, HEAD")]
    for method, path, allow in cases:
        answer = requests.request(method, f"{demo.url}{path}", timeout=5)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["Allow"] == allow
    assert requests.request("PUT", f"{demo.url}/nowhere", timeout=5).status_code == 404
    assert requests.head(f"{demo.url}/-/healthy", timeout=5).status_code == 200


def test_landing_page_names_the_source_and_says_demo(demo: ExporterProcess) -> None:
    html = demo.get("/").text
    assert "Demo mode" in html and "simulated" in html
    assert "Approved for install" in html and "No approval" in html


# --- bounded resources -------------------------------------------------------------------------------------


def threads_of(process: subprocess.Popen[bytes]) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text(encoding="ascii")
    return int(re.search(r"^Threads:\s+(\d+)$", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


def test_idle_and_slow_connections_cost_no_thread(sim: Simulator, tmp_path: Path) -> None:
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim))
    held: list[socket.socket] = []
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        for _ in range(8):  # every worker thread the front may start, started
            exporter.scrape()
        before = threads_of(exporter.process)
        for index in range(300):
            connection = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
            if index % 3 == 1:  # headers begun, never finished
                connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            elif index % 3 == 2:  # a body declared and never sent
                connection.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            held.append(connection)
        # The process holds all of them (its own open_fds says so), with no more threads than before.
        wait_for(lambda: (sample(exporter.scrape(), "process_open_fds") or 0) >= 300, timeout=15)
        assert threads_of(exporter.process) <= before + web.WORKERS - 1  # at most the rest of the fixed pool
        assert threads_of(exporter.process) < 20
        answer = requests.get(f"{exporter.url}/metrics", timeout=10)  # generous: only catches a hang
        assert answer.status_code == 200
        assert "ncentral_patch_approvals{" in answer.text
    finally:
        for connection in held:
            connection.close()
        assert exporter.stop() == 0


def status_kib(process: subprocess.Popen[bytes], field: str) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text(encoding="ascii")
    return int(re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


def open_fds(process: subprocess.Popen[bytes]) -> int:
    return len(os.listdir(f"/proc/{process.pid}/fd"))


def ready(url: str, **options: object) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=5, **options).status_code == 200  # type: ignore[arg-type]
    except requests.ConnectionError:
        return False


def test_idle_tls_connections_cost_a_few_kib_and_their_memory_is_reused(sim: Simulator, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": cert.name, "key_file": key.name}}))
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    context = ssl.create_default_context(cafile=str(cert))
    held: list[socket.socket] = []

    def hold(silent: int, served: int) -> None:
        """`silent` connections that never send a byte, `served` that did the handshake and one request."""
        for _ in range(silent):
            held.append(socket.create_connection(("127.0.0.1", exporter.port), timeout=10))
        for _ in range(served):
            tls = context.wrap_socket(socket.create_connection(("127.0.0.1", exporter.port), timeout=10),
                                      server_hostname="127.0.0.1")
            held.append(tls)
            tls.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Healthy\n"):
                answer += tls.recv(4096)
        # Accepted by the exporter: a silent connection shows nowhere else (its own connections to
        # N-central come and go, hence the slack).
        wait_for(lambda: open_fds(exporter.process) >= before_fds + silent + served - 5)

    def release() -> None:
        for connection in held:
            connection.close()
        held.clear()
        wait_for(lambda: open_fds(exporter.process) <= before_fds + 5)

    try:
        wait_for(lambda: ready(f"https://127.0.0.1:{exporter.port}", verify=str(cert)), timeout=15)
        before_fds = open_fds(exporter.process)
        hold(0, 20)  # everything a TLS connection needs made once
        release()
        before = status_kib(exporter.process, "VmRSS")
        hold(200, 50)
        grown = status_kib(exporter.process, "VmRSS") - before
        assert grown < 250 * 50, f"{grown / 250:.0f} KiB a connection"
        release()
        hold(200, 50)  # the same again: the memory of the first ones is reused
        again = status_kib(exporter.process, "VmRSS") - before
        assert again < grown + 250 * 10, (grown, again)
    finally:
        for connection in held:
            connection.close()
        assert exporter.stop() == 0


def tls_objects() -> int:
    return sum(isinstance(item, ssl.SSLObject) for item in gc.get_objects())


def client_hello(context: ssl.SSLContext) -> bytes:
    """A client's first handshake message (its SSLObject is gone when this returns)."""
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.read()
    raise AssertionError("a handshake done without the server")


def reset(connection: socket.socket) -> None:
    """Close with an RST, as a client that crashes or a middlebox that gives up does."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


@pytest.mark.parametrize("reset_in", ["handshake", "keep-alive"])
def test_a_tls_connection_reset_by_the_client_is_freed_without_waiting_for_the_garbage_collector(
    app: Exporter, tmp_path: Path, reset_in: str,
) -> None:
    """A TLS connection's SSLObject and buffers go as its connection ends, not at a full collection: an
    exception raised while another is being handled would tie them into a reference cycle, and rounds of
    resets would grow memory by tens of MiB between collections."""
    cert, key = make_certificate(tmp_path)
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": cert.name, "key_file": key.name}}))
    server = web.WebServer(app, ("127.0.0.1", 0), "/metrics", load_web_config(str(web_config)))
    server.start()
    context = ssl.create_default_context(cafile=str(cert))
    gc.collect()
    gc.disable()
    try:
        assert tls_objects() == 0
        for _ in range(20):
            raw = socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)
            if reset_in == "handshake":  # the ClientHello, then gone before the handshake ends
                raw.sendall(client_hello(context))
                assert raw.recv(65536)  # the server's answer: it is in the handshake
                reset(raw)
            else:  # one request answered, then gone while the server waits for the next
                tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
                tls.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK")
                reset(tls)
        wait_for(lambda: tls_objects() == 0)
    finally:
        gc.enable()
        server.shutdown()


def test_connections_fit_the_open_file_limit(sim: Simulator, tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state.json"
    log_path = tmp_path / "exporter.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # systemd's default soft limit is 1,024; 160, hard too, keeps the test small.
        process = subprocess.Popen(
            ["prlimit", "--nofile=160:160", sys.executable, "-m", "exporter", "--config.file",
             config_file(tmp_path, sim), "--storage.path", str(state), f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=child_env(None),
        )
    clients: list[socket.socket] = []
    try:
        wait_for(lambda: ready(url), timeout=15)
        flood = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n" * 4
        for _ in range(200):  # each pipelines 4 scrapes and never reads an answer
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(flood)
            clients.append(client)
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200  # accepted after all of them
        assert open_fds(process) <= 160 - web.FD_RESERVE // 2
    finally:
        for client in clients:
            client.close()
        process.terminate()
        assert process.wait(10) == 0
    output = log_path.read_text(encoding="utf-8")
    assert "the open-file limit allows fewer connections than --web.max-connections" in output
    assert "cannot accept" not in output and "Too many open files" not in output
    assert state.is_file()


@pytest.fixture
def app(make_app: MakeApp) -> Exporter:
    return make_app(Config(ncentral=NCentralSettings(url="https://ncentral.example.com:8443/api?x=1",
                                                     token="not-used-0123456789"),
                           collections=(ReportSettings(name="all"),)))


def serve(app: Exporter, **options: object) -> web.WebServer:
    server = web.WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig(), **options)  # type: ignore[arg-type]
    server.start()
    return server


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closed the connection (waits up to the socket's timeout)."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_requests_must_arrive_whole_in_time(app: Exporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "READ_TIMEOUT", 0.5)
    server = serve(app)
    try:
        port = server.address[1]
        slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        slow[1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        slow[2].sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for connection in slow:
            assert closed_by_server(connection)
            connection.close()
    finally:
        server.shutdown()


def settle(port: int) -> None:
    """One request through the front's loop: whatever the server was sent before, it has read."""
    assert requests.get(f"http://127.0.0.1:{port}/-/healthy", headers={"Connection": "close"},
                        timeout=10).status_code == 200


@contextlib.contextmanager
def raw_connections(server: web.WebServer) -> Iterator[Callable[..., socket.socket]]:
    """`connect(data=b"")`: a raw connection to `server` that has sent `data`; all closed, then the server
    shut down, at the end."""
    held: list[socket.socket] = []

    def connect(data: bytes = b"") -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)
        connection.sendall(data)
        held.append(connection)
        return connection

    try:
        yield connect
    finally:
        for connection in held:
            connection.close()
        server.shutdown()


def test_beyond_the_cap_the_slowest_waiting_connections_close_never_one_being_answered(
    app: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "GRACE", 0.0)
    blocking = _Blocking(app.exposition)
    app.exposition = blocking  # type: ignore[assignment]
    server = serve(app, max_connections=4)
    port = server.address[1]
    with raw_connections(server) as connect, concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            scrape = pool.submit(requests.get, f"http://127.0.0.1:{port}/metrics", timeout=30)
            assert blocking.entered.acquire(timeout=10)  # its request has arrived: it is being answered
            talker = connect(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 2000)  # the oldest
            idle = connect()
            settle(port)  # 4 open at most: nothing to close yet
            newer = connect()
            connect()  # a 5th: the one that sent the least in the longest time goes
            assert closed_by_server(idle)
            connect()  # a 5th again: of those that sent nothing, the older
            assert closed_by_server(newer)
            talker.settimeout(0.3)
            with pytest.raises(TimeoutError):
                talker.recv(1)  # it sent the most; it stays
            blocking.release.set()
            assert scrape.result().status_code == 200  # never closed to make room
        finally:
            blocking.release.set()


def test_a_new_connection_whose_request_has_not_arrived_yet_outlives_older_ones_in_their_grace(
    app: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every connection is within its grace, as in a storm of reconnecting slow-header clients. A scrape is
    # accepted before its request arrives: it has sent nothing yet, and must not be the one closed for room.
    monkeypatch.setattr(web, "GRACE", 60.0)

    def healthy(connection: socket.socket) -> bytes:
        """The answer, read to the end: the server has closed the connection and counts it no more."""
        connection.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer

    with raw_connections(serve(app, max_connections=5)) as connect:
        slow = [connect(b"GET /metrics HTTP/1.1\r\nHost: x\r\n") for _ in range(4)]
        assert healthy(connect()).startswith(b"HTTP/1.1 200 OK")  # the partial heads are read
        scrape = connect()  # the 5th: at the cap
        slow.append(connect(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"))  # room is made among the older ones
        late = connect()  # accepted at the cap: room is made among the others, never by it
        for connection in (late, scrape):  # the scrape holds its place until late is in
            answer = healthy(connection)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert closed_by_server(slow[0]) and closed_by_server(slow[1])  # the oldest go first
        slow[2].settimeout(0.3)
        with pytest.raises(TimeoutError):
            slow[2].recv(1)


def test_a_request_that_arrived_is_answered_through_a_burst_of_new_connections(app: Exporter) -> None:
    # Connections queued before the front starts accepting: a burst, beyond the cap, with one complete
    # request in the middle of it.
    server = web.WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig(), max_connections=5)
    port = server.address[1]
    burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    scrape = socket.create_connection(("127.0.0.1", port), timeout=10)
    scrape.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    burst += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    server.start()
    try:
        answer = b""
        while chunk := scrape.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
    finally:
        scrape.close()
        for connection in burst:
            connection.close()
        server.shutdown()


def test_clients_that_pipeline_and_never_read_cannot_keep_the_front_full(
    app: Exporter, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every slot taken by a connection whose answers are never read: beyond STALL, the longest stalled
    ones are closed, and a fresh scrape is answered long before WRITE_TIMEOUT would free any."""
    monkeypatch.setattr(web, "STALL", 0.2)
    server = serve(app, max_connections=5)
    with raw_connections(server) as connect:
        hogs = []
        for _ in range(5):
            hog = connect()
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hog.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)  # megabytes of answers, unread
            hogs.append(hog)
        scrape = requests.get(f"http://127.0.0.1:{server.address[1]}/metrics", timeout=20)
        assert scrape.status_code == 200
        assert any(drained_to_the_end(hog) for hog in hogs)  # the room was made by closing a hog


def drained_to_the_end(connection: socket.socket) -> bool:
    """Whether the server closed `connection` (reading what it had sent, without waiting for more)."""
    connection.settimeout(0.05)
    try:
        while connection.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True  # closed with requests unread
    except TimeoutError:
        return False
    return True


def test_one_pipelining_connection_does_not_starve_the_others(app: Exporter) -> None:
    server = serve(app)
    port = server.address[1]
    flood = socket.create_connection(("127.0.0.1", port), timeout=10)
    stop = threading.Event()
    answered = [0]

    def send() -> None:
        batch = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        while not stop.is_set():
            flood.sendall(batch)

    def read() -> None:
        while not stop.is_set() and (chunk := flood.recv(1 << 20)):
            answered[0] += chunk.count(b"HTTP/1.1 200 OK")

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            flooding = [pool.submit(send), pool.submit(read)]
            try:
                wait_for(lambda: answered[0] >= 2000)
                before = answered[0]
                for _ in range(6):
                    scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)  # generous: catches a hang
                    assert scrape.status_code == 200
                assert answered[0] > before  # the flood went on meanwhile
            finally:
                stop.set()
                flood.shutdown(socket.SHUT_RDWR)  # ends the blocked send and recv
                for future in flooding:
                    with contextlib.suppress(OSError):
                        future.result()
    finally:
        flood.close()
        server.shutdown()


@pytest.mark.parametrize(("version", "continues"), [("HTTP/1.1", True), ("HTTP/1.0", False)])
def test_100_continue_only_for_http_1_1(app: Exporter, version: str, continues: bool) -> None:
    server = serve(app)
    try:
        with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as connection:
            connection.sendall(f"POST /-/reload {version}\r\nHost: x\r\nExpect: 100-continue\r\n"
                               "Content-Length: 5\r\n\r\n".encode())
            settle(server.address[1])  # the head has been read, the body not sent: the moment for 100 Continue
            connection.sendall(b"hello")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") is continues, answer
        assert b"HTTP/1.1 400 Bad Request" in answer  # the reload itself (refused: no config file)
    finally:
        server.shutdown()


class _Blocking:
    """An exposition whose scrapes wait for `release`: requests that stay in flight (on worker threads, as
    when the report part is still to be rendered)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def rendered_parts(self, **kwargs: bool) -> None:
        return None

    def render_parts(self, **kwargs: bool) -> tuple[bytes, bytes]:
        self.entered.release()
        assert self.release.wait(30)
        return self.inner.render_parts(**kwargs)  # type: ignore[attr-defined, no-any-return]


def test_a_scrape_of_rendered_metrics_is_answered_while_every_worker_is_busy(
    app: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the report part is rendered, a scrape needs no worker thread: slow requests holding all of them
    do not queue it."""
    release = threading.Event()
    held = threading.Semaphore(0)

    def slow_ready() -> str | None:
        held.release()
        assert release.wait(30)
        return None

    monkeypatch.setattr(app, "not_ready", slow_ready)
    server = serve(app)
    url = f"http://127.0.0.1:{server.address[1]}"
    try:
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200  # renders the report part
        with concurrent.futures.ThreadPoolExecutor(web.WORKERS) as pool:
            waiting = [pool.submit(requests.get, f"{url}/-/ready", timeout=30) for _ in range(web.WORKERS)]
            for _ in range(web.WORKERS):
                assert held.acquire(timeout=10)  # every worker thread is held
            scrape = requests.get(f"{url}/metrics", timeout=5)
            assert scrape.status_code == 200
            assert "ncentral_patch_report_runs_total" in scrape.text
            release.set()
            assert [answer.result().status_code for answer in waiting] == [200] * web.WORKERS
    finally:
        release.set()
        server.shutdown()


@pytest.mark.parametrize("limit", [1, 0])
def test_max_requests_answers_503_at_once_beyond_the_limit(app: Exporter, limit: int) -> None:
    blocking = _Blocking(app.exposition)
    app.exposition = blocking  # type: ignore[assignment]
    server = serve(app, max_requests=limit)
    url = f"http://127.0.0.1:{server.address[1]}/metrics"
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(requests.get, url, timeout=30)
            assert blocking.entered.acquire(timeout=10)
            if limit:
                refused = requests.get(url, timeout=10)
                assert refused.status_code == 503
                assert "Limit of concurrent requests reached (1)" in refused.text
                assert requests.get(f"http://127.0.0.1:{server.address[1]}/-/healthy", timeout=5).status_code == 200
            else:
                second = pool.submit(requests.get, url, timeout=30)
                assert blocking.entered.acquire(timeout=10)  # both in flight: no limit
            blocking.release.set()
            assert first.result().status_code == 200
            if not limit:
                assert second.result().status_code == 200
    finally:
        blocking.release.set()
        server.shutdown()


# --- basic auth and the web config file ---------------------------------------------------------------------


def test_wrong_password_flood_does_not_delay_an_authorised_scrape(sim: Simulator, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=12)).decode()  # ~0.2 s a check
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    good = ("prometheus", "right-password")
    stop = threading.Event()
    refused: list[int] = []

    def flood(worker: int) -> None:
        attempt = 0
        with requests.Session() as session:
            while not stop.is_set():
                attempt += 1
                try:
                    answer = session.get(f"{exporter.url}/metrics", timeout=60,
                                         auth=("prometheus", f"guess-{worker}-{attempt}"))
                except requests.RequestException:
                    if stop.is_set():  # the exporter stopped under the flood, as the test ends
                        return
                    raise
                refused.append(answer.status_code)

    try:
        exporter.wait_healthy()
        assert requests.get(f"{exporter.url}/metrics", auth=good, timeout=30).status_code == 200  # now cached
        wait_for(lambda: exporter.get("/-/ready", auth=good).status_code == 200)
        lower = base64.b64encode(b"prometheus:right-password").decode()
        assert requests.get(f"{exporter.url}/metrics", headers={"Authorization": f"basic {lower}"},
                            timeout=5).status_code == 200  # the scheme in any case (RFC 7617)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            floods = [pool.submit(flood, worker) for worker in range(16)]
            try:
                wait_for(lambda: len(refused) >= 4, timeout=60)
                for _ in range(10):
                    # A scrape that waited behind the flood's bcrypt checks (16 waiting, 0.25 s each) would miss
                    # this generous bound; one answered from the cache of verified pairs is far inside it.
                    answer = requests.get(f"{exporter.url}/metrics", auth=good, timeout=2.5)
                    assert answer.status_code == 200
                    assert "ncentral_patch_approvals{" in answer.text
            finally:
                stop.set()
                exporter.stop()  # drops the flood's queued bcrypt checks rather than waiting them out
                for future in floods:
                    future.result()
        assert set(refused) <= {401, 503} and 401 in refused
    finally:
        stop.set()
        exporter.stop()


def served_certificate(port: int) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as connection:
        der = connection.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_renewed_certificate_is_served_without_restart(sim: Simulator, tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, key = make_certificate(first)
    new_cert, new_key = make_certificate(second)
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key"}}))
    (tmp_path / "tls.crt").write_bytes(cert.read_bytes())
    (tmp_path / "tls.key").write_bytes(key.read_bytes())
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    base = f"https://127.0.0.1:{exporter.port}"
    stalled: socket.socket | None = None
    try:
        def up() -> bool:
            assert exporter.process.poll() is None, exporter.log()
            try:
                return requests.get(f"{base}/-/healthy", verify=str(cert), timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=15)
        stalled = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)  # never starts a handshake
        assert served_certificate(exporter.port) == der_of(cert)
        # A renewal as certbot or cert-manager does it: new files moved into place.
        for source, target in ((new_cert, "tls.crt"), (new_key, "tls.key")):
            (tmp_path / f"{target}.tmp").write_bytes(source.read_bytes())
            os.replace(tmp_path / f"{target}.tmp", tmp_path / target)
        assert served_certificate(exporter.port) == der_of(new_cert)
        assert requests.get(f"{base}/metrics", verify=str(new_cert), timeout=5).status_code == 200

        # A broken new file keeps the old settings, and says so once in the log.
        web_config.write_text("tls_server_config: {cert_file: missing.crt, key_file: tls.key}\n")
        assert served_certificate(exporter.port) == der_of(new_cert)
        assert served_certificate(exporter.port) == der_of(new_cert)
        assert exporter.log().count("web config reload failed; keeping the old settings") == 1
        assert "missing.crt" in exporter.log()
        # A FIFO in its place is refused at once: reading it would block the event loop for good.
        web_config.unlink()
        os.mkfifo(web_config)
        assert served_certificate(exporter.port) == der_of(new_cert)
        assert requests.get(f"{base}/metrics", verify=str(new_cert), timeout=5).status_code == 200
        assert exporter.log().count("web config reload failed; keeping the old settings") == 2
        web_config.unlink()

        # Inline PEM, as exporter-toolkit accepts it; the first certificate again.
        web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert": cert.read_text(),
                                                                    "key": key.read_text()}}))
        wait_for(lambda: served_certificate(exporter.port) == der_of(cert))
        assert "BEGIN" not in exporter.log()  # the key (or certificate) text never reaches the log
    finally:
        if stalled is not None:
            stalled.close()
        assert exporter.stop() == 0


def test_basic_auth_users_follow_the_file(sim: Simulator, tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text("{}\n")
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    try:
        exporter.wait_healthy()
        assert exporter.get("/metrics").status_code == 200
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
        web_config.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
        wait_for(lambda: exporter.get("/metrics").status_code == 401)
        assert exporter.get("/metrics", auth=("prometheus", "secret")).status_code == 200
    finally:
        exporter.stop()


# --- the landing page ------------------------------------------------------------------------------------


def many_classes(count: int) -> ReportData:
    approvals = [ApprovalCount(f"Class {index:03d}", "approved_for_install", 1000 + index) for index in range(count)]
    approvals.append(ApprovalCount("Class 000", "declined", 1))  # tiny beside the rest: still visible
    return ReportData(approvals=tuple(approvals))


def put_data(app: Exporter, data: ReportData) -> None:
    def change(state: CollectionState) -> CollectionState:
        return replace(state, result=ReportResult(data), last_success_time=time.time(), last_run_success=True,
                       last_run_time=time.time(), runs_total=state.runs_total + 1)

    assert app.store.update("all", change, fingerprint=app.store.snapshot["all"].fingerprint)


def test_landing_page_is_bounded_rendered_once_per_result_and_names_its_source(
    app: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter import reports

    renders: list[ReportData] = []
    original = reports.data_section

    def counting(data: ReportData) -> str:
        renders.append(data)
        return original(data)

    monkeypatch.setattr(reports, "data_section", counting)
    put_data(app, many_classes(120))
    server = serve(app)
    url = f"http://127.0.0.1:{server.address[1]}/"
    try:
        pages = [requests.get(url, timeout=10).text for _ in range(3)]
        assert len(renders) == 1  # once per result, not per request
        html = pages[-1]
        assert html.count('<g class="bar"') == reports.MAX_CLASSES
        assert "and 70 more device classes" in html
        assert "Class 119" in html and "Class 049" not in html  # the largest first
        assert "Approved for install" in html and "approved_for_install" not in html
        assert "ncentral.example.com:8443" in html
        assert "/api" not in html and "not-used-0123456789" not in html and "x=1" not in html
        assert "Demo mode" not in html
        put_data(app, many_classes(3))
        html = requests.get(url, timeout=10).text
        assert len(renders) == 2
        widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', html)]
        assert widths and min(widths) >= reports.MIN_BAR
        assert 'font-size="1' not in html  # chart text takes the page's size
    finally:
        server.shutdown()


def test_landing_page_survives_many_classes(app: Exporter) -> None:
    put_data(app, many_classes(5000))
    server = serve(app)
    try:
        page = requests.get(f"http://127.0.0.1:{server.address[1]}/", timeout=30)
        assert page.status_code == 200
        assert len(page.content) < 200_000
    finally:
        server.shutdown()


def test_every_report_series_sample_is_the_same_in_both_formats(demo: ExporterProcess) -> None:
    text = parse_samples(demo.get("/metrics").text)
    om = demo.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT}).text
    om_samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in openmetrics_families(om) for s in family.samples
        if s.name.startswith("ncentral_patch_approvals")
    }
    assert om_samples == {key: value for key, value in text.items() if key[0] == "ncentral_patch_approvals"}


def test_negative_max_requests_exits_2_with_one_line() -> None:
    result = run_command("--demo", "--web.max-requests=-1", "--web.listen-address=127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ncentral-patch-exporter: error: --web.max-requests: must be 0 (no limit) or more"
    ]
