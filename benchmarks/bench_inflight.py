"""Scrapes never wait for N-central: /metrics latency of the real command while a report is in flight
against a slow simulator, against the same command idle, in alternating phases of one run.

The exporter (`python -m exporter --config.file ...`) serves 10,000 report series. The simulator (its own
process too, driven through its stdin) first completes reports at once; for an in-flight phase it is made slow
(reports take an hour) and a run is started through `POST /-/reload` with a changed interval, so the
exporter keeps polling it (every 20-100 ms, far more often than a real config would) while we scrape. Then
`finish_reports()` lets that run complete and the next idle phase begins. p99 is over all phases of a kind.

    .venv/bin/python -m benchmarks.bench_inflight [--rounds 3] [--requests 2000] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    HOST,
    PYTHON,
    REPO,
    RSS_LIMIT_MIB,
    RSS_TARGET,
    SIMULATOR_JWT,
    Figure,
    LoadResult,
    ServerProcess,
    finish,
    free_port,
    get,
    load,
    rss_kib,
    terminate,
)

_RUNS = re.compile(rb'^ncentral_patch_report_runs_total\{report="all"\} (\S+)$', re.MULTILINE)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _write_config(path: Path, url: str, interval: str) -> None:
    # JSON is YAML: no YAML library needed here.
    # 10,000 series is beyond the default caps (5,000 series, 4 MiB), which a real report never nears: this
    # measures scrapes of a large body, so the caps are raised.
    config = {
        "ncentral": {"url": url, "api_token": SIMULATOR_JWT, "request_timeout": "5s", "retry_backoff": "10ms",
                     "max_series": 100_000, "max_response_size": "64MiB"},
        "reports": [{"name": "all", "interval": interval, "poll_interval": "20ms", "poll_max_interval": "100ms",
                     "timeout": "2h"}],
    }
    path.write_text(json.dumps(config), encoding="utf-8")


def _post(port: int, path: str) -> int:
    import http.client

    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("POST", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _runs_total(port: int) -> float:
    status, body = get(port, "/metrics")
    found = _RUNS.search(body)
    return float(found.group(1)) if status == 200 and found else -1.0


def run(rounds: int, requests: int, seconds: float, series: int = 10_000, clients: int = 8) -> list[Figure]:
    phases: dict[str, LoadResult] = {"idle": LoadResult(), "in flight": LoadResult()}
    with tempfile.TemporaryDirectory(prefix="bench-inflight-") as tmp, \
            ServerProcess("simulator", "--series", str(series)) as sim:

        def count(endpoint: str) -> int:
            return int(sim.command(f"count {endpoint}"))

        config = Path(tmp) / "config.yaml"
        _write_config(config, sim.url, "3600s")
        port = free_port()
        log = (Path(tmp) / "exporter.log").open("wb")
        exporter = subprocess.Popen(
            [PYTHON, "-m", "exporter", f"--config.file={config}", f"--web.listen-address={HOST}:{port}",
             "--log.level=warning"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        try:
            _wait(lambda: _ready(port), 30, "the first report")
            runs = _runs_total(port)
            print(f"\n## /metrics latency, {series} report series, {clients} clients, {rounds} rounds")
            print(f"{'phase':9} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'polls':>6}")
            for index in range(rounds):
                for phase in ("idle", "in flight"):
                    polls_before = count("poll")
                    load(port, clients=clients, max_requests=50, max_seconds=seconds)  # warm: cache rendered
                    result = load(port, clients=clients, max_requests=requests, max_seconds=seconds)
                    polls = count("poll") - polls_before
                    if result.errors:
                        raise AssertionError(f"{result.errors} failed scrapes")
                    print(f"{phase:9} {result.requests:8d} {result.rps:8.1f} {result.p(50):8.2f} {result.p(99):8.2f} "
                          f"{max(result.latencies) * 1000:8.1f} {polls:6d}", flush=True)
                    phases[phase].latencies += result.latencies
                    phases[phase].requests += result.requests
                    phases[phase].seconds += result.seconds
                    if phase == "idle":
                        # Start a run against a slow N-central: a changed interval runs the report at once.
                        sim.command("generation_time 3600")
                        _write_config(config, sim.url, f"{3599 - index}s")
                        submits = count("submit")
                        assert _post(port, "/-/reload") == 200
                        _wait(_polling(count, submits, polls_before), 10, "the in-flight run to poll")
                    else:
                        if polls == 0 or _runs_total(port) != runs:
                            raise AssertionError("the report was not in flight during the whole phase")
                        sim.command("generation_time 0")
                        sim.command("finish")
                        _wait(_completed(port, runs), 10, "the in-flight run to complete")
                        runs = _runs_total(port)
            exporter_rss = rss_kib(exporter.pid) / 1024
        finally:
            terminate(exporter)
            log.close()
    idle, busy = phases["idle"], phases["in flight"]
    print(f"pooled: idle p99 {idle.p(99):.2f} ms, in flight p99 {busy.p(99):.2f} ms; "
          f"exporter RSS {exporter_rss:.1f} MiB")
    ratio = busy.p(99) / idle.p(99)
    return [
        Figure("scrapes never wait", f"p99 /metrics latency, report in flight, {series} series",
               f"{busy.p(99):.1f} ms", f"{idle.p(99):.1f} ms (idle)", ratio, "≤ 1.2x", ratio <= 1.2),
        Figure("memory", f"the real command's RSS after the in-flight phases, {series} series",
               f"{exporter_rss:.1f} MiB", "-", None, RSS_TARGET, exporter_rss < RSS_LIMIT_MIB),
    ]


def _polling(count: Callable[[str], int], submits: int, polls: int) -> Callable[[], bool]:
    """A run submitted after `submits` submits and polling since `polls` polls."""
    return lambda: count("submit") > submits and count("poll") > polls


def _completed(port: int, runs: float) -> Callable[[], bool]:
    return lambda: _runs_total(port) > runs


def _ready(port: int) -> bool:
    try:
        return get(port, "/-/ready", timeout=2)[0] == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="most scrapes per phase")
    parser.add_argument("--seconds", type=float, default=4.0, help="longest phase")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.rounds, args.requests, args.seconds, args.series), args.json)


if __name__ == "__main__":
    main()
