"""Scrape cost against the physical limit: our /metrics beside nginx serving the very same bytes from a file
(and, for gzip, its `gzip_static` twin), loaded the same way, in alternating phases of one run.

nginx (Debian's nginx-light) runs one worker process (ours is one process too, its HTTP on one event loop
thread) with sendfile, keep-alive and no access log: as cheap as serving those bytes gets on this machine.
The load generator is `wrk` (C, 2 threads, 8 keep-alive connections) when installed, else the Python one of
`common.py`; each phase is repeated `--rounds` times, alternating servers, and the median is kept.

    .venv/bin/python -m benchmarks.bench_nginx [--series 10000] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import HOST, Figure, ServerProcess, finish, free_port, get, load, terminate

NGINX = next((path for path in ("/usr/sbin/nginx", shutil.which("nginx")) if path and Path(path).is_file()), None)
WRK = shutil.which("wrk")
GZIP_TARGET = 1600.0  # req/s: the rate before the single-member gzip change, measured here with wrk
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_BAD = re.compile(
    r"Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


class Nginx:
    """nginx on a free loopback port, serving `body` at /metrics, and `body` gzipped to clients that ask."""

    def __init__(self, directory: Path, body: bytes) -> None:
        assert NGINX is not None
        self.port = free_port()
        directory.chmod(0o755)  # nginx's worker may run as another user (nobody) when started by root
        (directory / "metrics.txt").write_bytes(body)
        (directory / "metrics.txt.gz").write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
        config = directory / "nginx.conf"
        config.write_text(f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    default_type "text/plain; version=0.0.4; charset=utf-8";
    server {{
        listen {HOST}:{self.port};
        root {directory};
        location = /metrics {{ gzip_static on; try_files /metrics.txt =404; }}
    }}
}}
""", encoding="utf-8")
        self.process = subprocess.Popen([NGINX, "-c", str(config), "-p", str(directory)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if get(self.port, "/metrics", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.process)


def _wrk(port: int, gzipped: bool, seconds: float) -> tuple[float, float]:
    """(req/s, p99 ms) from wrk: 2 threads, 8 connections."""
    assert WRK is not None
    encoding = "gzip" if gzipped else "identity"
    result = subprocess.run(
        [WRK, "-t2", "-c8", f"-d{max(1, round(seconds))}s", "--latency", "-H", f"Accept-Encoding: {encoding}",
         f"http://{HOST}:{port}/metrics"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    for match in _BAD.finditer(result.stdout):
        if any(int(group) for group in match.groups() if group):
            raise AssertionError(f"wrk saw failed requests:\n{result.stdout}")
    rate = _RATE.search(result.stdout)
    p99 = _P99.search(result.stdout)
    if rate is None or p99 is None:
        raise AssertionError(f"unexpected wrk output:\n{result.stdout}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return float(rate.group(1)), float(p99.group(1)) * scale


def _python_load(port: int, gzipped: bool, seconds: float) -> tuple[float, float]:
    result = load(port, clients=8, max_requests=1_000_000, max_seconds=seconds, gzipped=gzipped)
    if result.errors:
        raise AssertionError(f"{result.errors} failed requests")
    return result.rps, result.p(99)


def run(series: int, seconds: float, rounds: int) -> list[Figure]:
    measure = _wrk if WRK else _python_load
    generator = "wrk -t2 -c8" if WRK else "the Python load generator (8 clients; wrk not installed)"
    ours = ServerProcess("ours", "--series", str(series))
    try:
        _, body = get(ours.port, "/metrics", {"Accept-Encoding": "identity"})
        _, zipped = get(ours.port, "/metrics", {"Accept-Encoding": "gzip"})
        if gzip.decompress(zipped).count(b"\n") != body.count(b"\n"):
            raise AssertionError("our gzip body is not the plain body")
        with tempfile.TemporaryDirectory(prefix="bench-nginx-") as directory:
            nginx = Nginx(Path(directory), body)
            try:
                _, static = get(nginx.port, "/metrics", {"Accept-Encoding": "gzip"})
                if gzip.decompress(static) != body:
                    raise AssertionError("nginx does not serve the same bytes")
                print(f"\n## /metrics at {series} report series ({len(body) / 1e6:.2f} MB plain, "
                      f"{len(zipped) / 1e3:.0f} kB gzip), ours beside nginx, {generator}, {rounds} x {seconds:g} s")
                print(f"{'server':6} {'encoding':8} {'req/s':>8} {'p99 ms':>8}   (median of {rounds})")
                rates: dict[tuple[str, bool], float] = {}
                for gzipped in (False, True):
                    samples: dict[str, list[tuple[float, float]]] = {"nginx": [], "ours": []}
                    for _ in range(rounds):
                        for name, port in (("nginx", nginx.port), ("ours", ours.port)):
                            measure(port, gzipped, 1)  # warm-up
                            samples[name].append(measure(port, gzipped, seconds))
                    for name in ("nginx", "ours"):
                        rate = statistics.median(rate for rate, _ in samples[name])
                        p99 = statistics.median(p99 for _, p99 in samples[name])
                        rates[(name, gzipped)] = rate
                        print(f"{name:6} {'gzip' if gzipped else 'identity':8} {rate:8.0f} {p99:8.2f}", flush=True)
            finally:
                nginx.stop()
    finally:
        ours.stop()
    plain_ratio = rates[("ours", False)] / rates[("nginx", False)]
    gzip_ratio = rates[("ours", True)] / rates[("nginx", True)]
    print(f"\nratio ours/nginx: identity {plain_ratio:.2f}x, gzip {gzip_ratio:.2f}x")
    return [
        Figure("scrape cost", f"req/s at {series} series, identity, against nginx serving the same file",
               f"{rates[('ours', False)]:.0f}/s", f"{rates[('nginx', False)]:.0f}/s (nginx)", plain_ratio,
               "≥ 0.5x", plain_ratio >= 0.5),
        Figure("scrape cost", f"req/s at {series} series, gzip, beside nginx's gzip_static twin",
               f"{rates[('ours', True)]:.0f}/s", f"{rates[('nginx', True)]:.0f}/s (nginx)", gzip_ratio,
               f"≥ {GZIP_TARGET:.0f}/s", rates[("ours", True)] >= GZIP_TARGET),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each load phase")
    parser.add_argument("--rounds", type=int, default=3, help="phases per server and encoding (median kept)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    if NGINX is None:
        raise SystemExit("nginx is not installed (Debian: apt-get install nginx-light)")
    finish(run(args.series, args.seconds, args.rounds), args.json)


if __name__ == "__main__":
    main()
