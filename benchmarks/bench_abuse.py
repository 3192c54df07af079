"""The web front under abuse, side by side in one run: /metrics scrape latency idle, while one connection
floods pipelined requests, and while 2,000 connections dribble their request heads; then what idle
connections cost in resident memory at 1,000 of them, plain and TLS, and whether that memory is reused
after they close.

The server is ours (benchmarks/serve.py, 1,000 report series), plain or with TLS from a web config. The
abusers run in child processes of this script (`--flood PORT`, `--slow PORT N`), so they never share a GIL
with the client that measures. Each scrape is a fresh connection (a new scraper must get in, too).

- flood: one connection sends `GET /-/healthy` 1,000 times per write, in a loop, and reads the answers;
- slow headers: N connections each send a partial request head, then one header line every 2 s,
  reconnecting whenever the server closes them (the server keeps at most 1,000: the rest churn);
- never reading: as many connections as the cap, and 30 more, each pipeline 40 `GET /metrics` and never
  read an answer, then one fresh scrape is timed (the answers cannot all be written: every slot is taken);
- reset handshakes: rounds of 1,000 TLS connections that send a ClientHello and end with an RST mid-handshake,
  the server's resident memory after each round (reused, not grown, round after round).

    .venv/bin/python -m benchmarks.bench_abuse [--scrapes 200] [--connections 1000] [--slow 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import resource
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    PYTHON,
    REPO,
    RSS_LIMIT_MIB,
    RSS_TARGET,
    Figure,
    ServerProcess,
    _readline,
    finish,
    get,
    percentile,
    rss_kib,
)

SERIES = "1000"
HEALTHY = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"


def _until_stdin_closes(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def _raise_open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))


# --- the abusers (child processes) ------------------------------------------------------------------------


def flood(port: int) -> None:
    """One connection, 1,000 pipelined requests per write, answers read by a thread; until stdin closes."""
    connection = socket.create_connection((HOST, port))
    connection.settimeout(1.0)
    answered = [0]
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                chunk = connection.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                break
            answered[0] += chunk.count(b" 200 OK")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    threading.Thread(target=_until_stdin_closes, args=(stop,), daemon=True).start()
    batch = HEALTHY * 1000
    began = time.perf_counter()
    print("READY", flush=True)
    while not stop.is_set():
        try:
            connection.sendall(batch)
        except TimeoutError:
            continue
    print(f"ANSWERED {answered[0] / (time.perf_counter() - began):.0f}", flush=True)


def slow(port: int, count: int) -> None:
    """`count` connections sending a partial head, then a header line every 2 s each; reconnecting."""
    _raise_open_files(count + 100)
    selector = selectors.DefaultSelector()
    reconnects = 0

    def connect() -> socket.socket:
        connection = socket.create_connection((HOST, port))
        connection.setblocking(False)
        connection.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        selector.register(connection, selectors.EVENT_READ)
        return connection

    def replace(connection: socket.socket) -> socket.socket:
        nonlocal reconnects
        selector.unregister(connection)
        connection.close()
        reconnects += 1
        return connect()

    connections = [connect() for _ in range(count)]
    stop = threading.Event()
    threading.Thread(target=_until_stdin_closes, args=(stop,), daemon=True).start()
    print("READY", flush=True)
    tick = 0
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.1):  # readable: closed by the server
            closed: Any = key.fileobj
            connections[connections.index(closed)] = replace(closed)
        tick += 1
        for index in range(tick % 20, count, 20):  # each connection once per 20 ticks of 0.1 s
            try:
                connections[index].send(b"X-Slow: a\r\n")
            except (BlockingIOError, OSError):
                connections[index] = replace(connections[index])
    print(f"RECONNECTS {reconnects}", flush=True)


class Abuser:
    """`python -m benchmarks.bench_abuse --flood PORT` (or --slow PORT N) until closed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([PYTHON, "-m", "benchmarks.bench_abuse", *args], cwd=REPO, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = _readline(self.process.stdout, 120)
        if line != "READY":
            self.stop()
            raise RuntimeError(f"abuser did not start: {line!r}")

    def stop(self) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        last = _readline(self.process.stdout, 30)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        return last


# --- measuring ----------------------------------------------------------------------------------------------


def scrapes(port: int, count: int) -> tuple[list[float], int]:
    """Latencies (s) of `count` scrapes, each on a fresh connection, and how many got no 200 answer."""
    latencies: list[float] = []
    failed = 0
    for _ in range(count):
        began = time.perf_counter()
        try:
            status, body = get(port, "/metrics", {"Accept-Encoding": "identity"}, timeout=30)
        except (OSError, http.client.HTTPException):
            status, body = 0, b""
        if status == 200 and body:
            latencies.append(time.perf_counter() - began)
        else:
            failed += 1
    return latencies, failed


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_fds(pid: int, enough: int, more: bool) -> None:
    deadline = time.monotonic() + 60
    while (_fds(pid) < enough) if more else (_fds(pid) > enough):
        if time.monotonic() > deadline:
            raise AssertionError(f"the server holds {_fds(pid)} descriptors, expected {enough}")
        time.sleep(0.05)


def connection_memory(server: ServerProcess, count: int, context: ssl.SSLContext | None) -> tuple[float, float, float]:
    """KiB per silent connection (never sends a byte), KiB per connection that made a request and idles on,
    and KiB of growth when as many of those are opened again after all closed (memory reused: about 0)."""
    pid = server.pid
    base_fds = _fds(pid)

    def served(number: int) -> list[socket.socket]:
        held = []
        for _ in range(number):
            connection = socket.create_connection((HOST, server.port), timeout=30)
            if context is not None:
                connection = context.wrap_socket(connection, server_hostname=HOST)
            held.append(connection)
            connection.sendall(HEALTHY)
            answer = b""
            while not answer.endswith(b"Healthy\n"):
                answer += connection.recv(4096)
        return held

    for connection in served(20):  # what a first connection allocates once
        connection.close()
    _wait_fds(pid, base_fds, more=False)
    before = rss_kib(pid)
    silent = [socket.create_connection((HOST, server.port), timeout=30) for _ in range(count)]
    _wait_fds(pid, base_fds + count, more=True)  # well within the 10 s a silent connection is given
    after_silent = rss_kib(pid)
    for connection in silent:
        connection.close()
    _wait_fds(pid, base_fds, more=False)
    rounds = []
    for _ in range(2):  # the second time, the memory the first left is reused
        start = rss_kib(pid)
        busy = served(count)
        time.sleep(0.5)
        rounds.append(rss_kib(pid) - start)
        for connection in busy:
            connection.close()
        _wait_fds(pid, base_fds, more=False)
    return (after_silent - before) / count, rounds[0] / count, float(rounds[1])


def never_reading(server: ServerProcess, count: int) -> float:
    """Seconds until a fresh scrape is answered while `count` connections each pipeline 40 scrapes and
    never read (their answers fill the socket buffers, so every one of them is being answered)."""
    held = []
    try:
        for _ in range(count):
            connection = socket.socket()
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.settimeout(30)
            connection.connect((HOST, server.port))
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
            held.append(connection)
        began = time.perf_counter()
        status, _ = get(server.port, "/metrics", {"Accept-Encoding": "identity"}, timeout=120)
        if status != 200:
            raise AssertionError(f"the scrape got {status}")
        return time.perf_counter() - began
    finally:
        for connection in held:
            connection.close()


def reset_handshakes(server: ServerProcess, count: int, context: ssl.SSLContext, rounds: int) -> list[float]:
    """The server's RSS (KiB) before, and after each of `rounds` rounds of `count` TLS connections that
    send their ClientHello, get the server's first answer and end with an RST."""
    pid = server.pid
    base_fds = _fds(pid)
    rss: list[float] = [rss_kib(pid)]
    for _ in range(rounds):
        held = []
        for _ in range(count):
            outgoing = ssl.MemoryBIO()
            client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=HOST)
            with contextlib.suppress(ssl.SSLWantReadError):
                client.do_handshake()
            connection = socket.create_connection((HOST, server.port), timeout=30)
            connection.sendall(outgoing.read())
            connection.recv(65536)  # the server is in the handshake
            held.append(connection)
        for connection in held:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
        _wait_fds(pid, base_fds, more=False)
        time.sleep(0.5)
        rss.append(rss_kib(pid))
    return rss


def _certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    cert, key_path = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_path


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def run(count: int, connections: int, slow_count: int) -> list[Figure]:
    _raise_open_files(4 * connections + 200)
    figures: list[Figure] = []
    with ServerProcess("ours", "--series", SERIES) as server:
        scrapes(server.port, 20)  # warm-up
        idle, idle_failed = scrapes(server.port, count)
        abuser = Abuser("--flood", str(server.port))
        try:
            flooded, flood_failed = scrapes(server.port, count)
        finally:
            flood_rate = abuser.stop()
        abuser = Abuser("--slow-port", str(server.port), "--slow", str(slow_count))
        try:
            slowed, slow_failed = scrapes(server.port, count)
        finally:
            reconnects = abuser.stop()
        server_rss = rss_kib(server.pid) / 1024
    print(f"\n## /metrics scrapes ({SERIES} series, a fresh connection each), {count} a phase")
    print(f"{'phase':32} {'answered':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for phase, values, failed in (("idle", idle, idle_failed), ("one connection pipelining", flooded, flood_failed),
                                  (f"{slow_count} slow-header connections", slowed, slow_failed)):
        print(f"{phase:32} {len(values):>4}/{len(values) + failed:<4} {_ms(values, 50):8.2f} {_ms(values, 99):8.2f}")
    print(f"flood: {flood_rate.removeprefix('ANSWERED ')} answers/s to the flooding connection; "
          f"slow headers: {reconnects.removeprefix('RECONNECTS ')} reconnects; server RSS after: {server_rss:.1f} MiB")
    idle_p50, flood_p50, slow_p50 = _ms(idle, 50), _ms(flooded, 50), _ms(slowed, 50)
    figures += [
        Figure("web front under abuse", "scrape p50, one connection pipelining 1,000 requests a write",
               f"{flood_p50:.1f} ms", f"{idle_p50:.1f} ms (idle)", flood_p50 / idle_p50, "≤ 2x idle",
               flood_p50 <= 2 * idle_p50 and not flood_failed),
        Figure("web front under abuse", "scrape p99, one connection pipelining",
               f"{_ms(flooded, 99):.1f} ms", f"{_ms(idle, 99):.1f} ms (idle)", _ms(flooded, 99) / _ms(idle, 99),
               "-", True),
        Figure("web front under abuse", f"scrapes answered, {slow_count} slow-header connections",
               f"{len(slowed)}/{count}", f"{len(idle)}/{count} (idle)", None, "all", not slow_failed),
        Figure("web front under abuse", f"scrape p50, {slow_count} slow-header connections",
               f"{slow_p50:.1f} ms", f"{idle_p50:.1f} ms (idle)", slow_p50 / idle_p50, "< 100 ms", slow_p50 < 100),
    ]

    rows: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as directory:
        cert, key = _certificate(Path(directory))
        web_config = Path(directory) / "web.yml"
        web_config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n", encoding="utf-8")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        for name, options, client in (("plain", (), None), ("TLS", ("--web-config", str(web_config)), context)):
            with ServerProcess("ours", "--series", SERIES, "--max-connections", str(3 * connections),
                               *options) as server:
                rows[name] = connection_memory(server, connections, client)
        with ServerProcess("ours", "--series", SERIES, "--max-connections", str(3 * connections),
                           "--web-config", str(web_config)) as server:
            resets = reset_handshakes(server, connections, context, 4)
    with ServerProcess("ours", "--series", SERIES, "--max-connections", str(connections)) as server:
        scrapes(server.port, 5)  # warm-up
        stuck = never_reading(server, connections + 30)
    print(f"\n## Resident memory per connection, {connections} at a time (KiB)")
    print(f"{'server':6} {'silent':>8} {'served, idle':>13} {'served again, growth (KiB in all)':>35}")
    for name, (silent, served, again) in rows.items():
        print(f"{name:6} {silent:8.1f} {served:13.1f} {again:35.0f}")
    rounds = [f"{(after - resets[0]) / 1024:+.1f}" for after in resets[1:]]
    print(f"TLS handshakes reset by the client, {connections} a round: RSS growth after each round "
          f"{', '.join(rounds)} MiB (from {resets[0] / 1024:.1f} MiB)")
    print(f"a fresh scrape with {connections + 30} connections pipelining and never reading: answered in "
          f"{stuck:.1f} s")
    plain, tls = rows["plain"], rows["TLS"]
    first_round, later = resets[1] - resets[0], resets[-1] - resets[1]
    figures += [
        Figure("web front under abuse", f"RSS per silent connection, {connections} TLS", f"{tls[0]:.1f} KiB",
               f"{plain[0]:.1f} KiB (plain)", tls[0] / plain[0] if plain[0] > 0 else None, "< 50 KiB", tls[0] < 50),
        Figure("web front under abuse", f"RSS per served idle connection, {connections} TLS", f"{tls[1]:.1f} KiB",
               f"{plain[1]:.1f} KiB (plain)", tls[1] / plain[1] if plain[1] > 0 else None, "< 50 KiB", tls[1] < 50),
        Figure("web front under abuse", "RSS of 1,000 served idle TLS connections", f"{tls[1] * 1000 / 1024:.1f} MiB",
               f"{plain[1] * 1000 / 1024:.1f} MiB (plain)", None, RSS_TARGET, tls[1] * 1000 / 1024 < RSS_LIMIT_MIB),
        Figure("web front under abuse", "RSS growth opening as many TLS connections again after closing",
               f"{tls[2] / 1024:+.1f} MiB", f"{tls[1] * connections / 1024:+.1f} MiB (first time)", None,
               "reused (< 10 % of the first, or 1 MiB)", tls[2] < max(1024, 0.1 * tls[1] * connections)),
        Figure("web front under abuse", f"RSS growth over rounds 2-4 of {connections} TLS handshakes reset by the "
               "client", f"{later / 1024:+.1f} MiB", f"{first_round / 1024:+.1f} MiB (round 1)", None,
               "reused (< 10 % of round 1, or 1 MiB)", later < max(1024, 0.1 * first_round)),
        Figure("web front under abuse", f"a fresh scrape, {connections + 30} connections pipelining, never reading",
               f"{stuck:.1f} s", "60 s (the write timeout)", stuck / 60, "< 60 s", stuck < 60),
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes measured per phase")
    parser.add_argument("--connections", type=int, default=1000, help="connections held for the memory figures")
    parser.add_argument("--slow", type=int, default=2000, help="slow-header connections")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--flood", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--slow-port", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        flood(args.flood)
    elif args.slow_port:
        slow(args.slow_port, args.slow)
    else:
        finish(run(args.scrapes, args.connections, args.slow), args.json)


if __name__ == "__main__":
    main()
