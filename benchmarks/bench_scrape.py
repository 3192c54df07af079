"""Scrape cost: requests per second and latency of /metrics, ours against prometheus_client's own
`start_http_server` serving the same series, side by side, plain and gzip, at 10,000 and 100 series.

Each server runs in its own process (benchmarks/serve.py); this process is the load generator:
8 threads, each on its own keep-alive HTTP/1.1 connection (the stock server closes its connections after
every response, so its clients reconnect), every phase bounded in requests and seconds.

    .venv/bin/python -m benchmarks.bench_scrape [--seconds 5] [--requests 20000] [--series 10000 100]
"""

from __future__ import annotations

import argparse
import gzip

from benchmarks.common import RSS_LIMIT_MIB, RSS_TARGET, Figure, LoadResult, ServerProcess, finish, get, load, rss_kib

SERVERS = ("stock", "ours")


def _series_of(text: bytes) -> set[str]:
    """The series (name and labels) of an exposition, values left out; process/python series differ in value only."""
    return {line.rsplit(" ", 1)[0] for line in text.decode().splitlines() if line and not line.startswith("#")}


def check_equivalent(stock: ServerProcess, ours: ServerProcess) -> int:
    """Both servers expose the same series (and ours the same again when gzipped); returns how many."""
    _, stock_body = get(stock.port, "/metrics")
    _, ours_body = get(ours.port, "/metrics")
    _, ours_gzip = get(ours.port, "/metrics", {"Accept-Encoding": "gzip"})
    stock_series, ours_series = _series_of(stock_body), _series_of(ours_body)
    if stock_series != ours_series:
        raise AssertionError(f"the servers differ: {sorted(stock_series ^ ours_series)[:5]}")
    if _series_of(gzip.decompress(ours_gzip)) != ours_series:
        raise AssertionError("our gzip body is not the plain body")
    return len(ours_series)


def run(series_counts: list[int], seconds: float, requests: int, clients: int = 8) -> list[Figure]:
    figures: list[Figure] = []
    for series in series_counts:
        servers = {kind: ServerProcess(kind, "--series", str(series)) for kind in SERVERS}
        try:
            exposed = check_equivalent(servers["stock"], servers["ours"])
            print(f"\n## {series} report series ({exposed} series exposed in all), {clients} clients")
            print(f"{'server':6} {'encoding':8} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} "
                  f"{'p99 ms':>8} {'max ms':>8} {'MB/s':>7} {'RSS MiB':>7}")
            results: dict[tuple[str, bool], LoadResult] = {}
            for gzipped in (False, True):
                for kind in SERVERS:
                    load(servers[kind].port, clients=clients, max_requests=20, max_seconds=seconds, gzipped=gzipped)
                    result = load(servers[kind].port, clients=clients, max_requests=requests, max_seconds=seconds,
                                  gzipped=gzipped)
                    results[(kind, gzipped)] = result
                    print(f"{kind:6} {'gzip' if gzipped else 'identity':8} {result.requests:8d} {result.errors:6d} "
                          f"{result.rps:8.1f} {result.p(50):8.2f} {result.p(99):8.2f} "
                          f"{max(result.latencies) * 1000:8.1f} {result.body_bytes / result.seconds / 2**20:7.1f} "
                          f"{rss_kib(servers[kind].pid) / 1024:7.1f}", flush=True)
                    if result.errors:
                        raise AssertionError(f"{kind}: {result.errors} failed requests")
            at_scale = series >= 10_000
            for gzipped in (False, True):
                ours, stock = results[("ours", gzipped)], results[("stock", gzipped)]
                ratio = ours.rps / stock.rps
                figures.append(Figure(
                    "scrape cost", f"req/s at {series} series, {'gzip' if gzipped else 'identity'}",
                    f"{ours.rps:.0f}/s", f"{stock.rps:.0f}/s", ratio,
                    "≥ 3x" if at_scale else "≥ 1x (no slower)", ratio >= (3.0 if at_scale else 1.0),
                ))
            ours_rss, stock_rss = rss_kib(servers["ours"].pid) / 1024, rss_kib(servers["stock"].pid) / 1024
            figures.append(Figure(
                "memory", f"server RSS after load, {series} series", f"{ours_rss:.1f} MiB", f"{stock_rss:.1f} MiB",
                ours_rss / stock_rss, RSS_TARGET, ours_rss < RSS_LIMIT_MIB,
            ))
        finally:
            for server in servers.values():
                server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load phase")
    parser.add_argument("--requests", type=int, default=20_000, help="most requests of each load phase")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.series, args.seconds, args.requests), args.json)


if __name__ == "__main__":
    main()
