"""Start-up: from `Popen([python, -m, exporter, --demo, ...])` to the first 200 on /-/healthy (median of N),
side by side with a bare `python -c pass` (start to exit) and prometheus_client's own `start_http_server`
(start to the first 200 on /metrics), plus the slowest imports of `python -X importtime`.

    .venv/bin/python -m benchmarks.bench_startup [--runs 7]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import time

from benchmarks.common import HOST, PYTHON, REPO, Figure, finish, free_port, terminate

_STOCK = (
    "import sys, threading\n"
    "from prometheus_client import start_http_server\n"
    "start_http_server(int(sys.argv[1]), addr='127.0.0.1')\n"
    "threading.Event().wait()\n"
)


def _ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def time_to_200(args: list[str], port: int, path: str, timeout: float = 20.0) -> float:
    """Seconds from Popen to the first 200 on `path`; polls every 2 ms."""
    began = time.perf_counter()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        while not _ok(port, path):
            if process.poll() is not None:
                raise AssertionError(f"{args} exited with {process.returncode}")
            if time.perf_counter() - began > timeout:
                raise AssertionError(f"{args}: no 200 on {path} within {timeout} s")
            time.sleep(0.002)
        return time.perf_counter() - began
    finally:
        terminate(process)


def time_to_exit(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO, timeout=30)
    return time.perf_counter() - began


def import_offenders(module: str, top: int = 8) -> list[tuple[int, int, str]]:
    """The `top` imports of `module` by own (self) time: (self µs, cumulative µs, name)."""
    done = subprocess.run([PYTHON, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True,
                          check=True, cwd=REPO, timeout=60)
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(own), int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:top]


def run(runs: int) -> list[Figure]:
    ours: list[float] = []
    stock: list[float] = []
    bare: list[float] = []
    for _ in range(runs):  # interleaved, so a disturbance hits all three alike
        bare.append(time_to_exit([PYTHON, "-c", "pass"]))
        port = free_port()
        stock.append(time_to_200([PYTHON, "-c", _STOCK, str(port)], port, "/metrics"))
        port = free_port()
        ours.append(time_to_200(
            [PYTHON, "-m", "exporter", "--demo", f"--web.listen-address={HOST}:{port}", "--log.level=warning"],
            port, "/-/healthy",
        ))
    print(f"\n## Start-up, median of {runs} (min-max)")
    for name, values in (("python -c pass (to exit)", bare), ("stock start_http_server (to 200)", stock),
                         ("ours --demo (to 200 on /-/healthy)", ours)):
        low, high = min(values) * 1000, max(values) * 1000
        print(f"{name:36} {statistics.median(values) * 1000:7.0f} ms  ({low:.0f}-{high:.0f})")
    for module in ("exporter.cli", "exporter.app, exporter.web, exporter.simulator"):
        print(f"\nslowest imports of `import {module}` (self ms, cumulative ms):")
        for own, cumulative, name in import_offenders(module):
            print(f"  {own / 1000:6.1f} {cumulative / 1000:7.1f}  {name}")
    median = statistics.median(ours)
    return [
        Figure("start-up", "process start to 200 on /-/healthy (--demo)", f"{median * 1000:.0f} ms",
               f"{statistics.median(stock) * 1000:.0f} ms (stock server)", median / statistics.median(stock),
               "< 1 s", median < 1.0),
        Figure("start-up", "the same against a bare `python -c pass`", f"{median * 1000:.0f} ms",
               f"{statistics.median(bare) * 1000:.0f} ms (python -c pass)", median / statistics.median(bare), "-",
               True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.runs), args.json)


if __name__ == "__main__":
    main()
