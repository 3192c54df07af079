"""Memory: resident set of the real runner, store and exposition over 1,000 consecutive report runs against
the simulator (its own process; reports COMPLETED at once, 1,000 series each), a scrape rendered (plain and
gzip) after every run. Prints VmRSS at start, after 100 runs and at the end, and the live Python objects, next
to the stock baseline: a bare interpreter that imported the same libraries, measured in the same run.

    .venv/bin/python -m benchmarks.bench_memory [--runs 1000] [--series 1000]
"""

from __future__ import annotations

import argparse
import gc
import time

from benchmarks.common import (
    RSS_LIMIT_MIB,
    RSS_TARGET,
    SIMULATOR_JWT,
    Figure,
    ServerProcess,
    baseline_kib,
    finish,
    rss_kib,
)


def run(runs: int, series: int) -> list[Figure]:
    from exporter.app import Exporter
    from exporter.config import Config, NCentralSettings
    from exporter.reports import ReportSettings

    baseline = baseline_kib("rss_kib") / 1024
    with ServerProcess("simulator", "--series", str(series)) as sim:
        config = Config(
            ncentral=NCentralSettings(url=sim.url, token=SIMULATOR_JWT, request_timeout=5.0, retry_backoff=0.01),
            collections=(ReportSettings(name="all", poll_interval=0.001, poll_max_interval=0.005, timeout=30.0),),
        )
        app = Exporter(config)
        marks: dict[str, tuple[float, int]] = {"start": (rss_kib() / 1024, len(gc.get_objects()))}
        began = time.perf_counter()
        try:
            for number in range(1, runs + 1):
                if not app.run("all"):
                    raise AssertionError(f"run {number} failed: {app.store.snapshot['all'].last_error}")
                plain, gzipped = app.exposition.render_parts(), app.exposition.render_parts(gzipped=True)
                assert all(plain) and all(gzipped)
                if number in (1, 100, runs):
                    marks[f"after {number}"] = (rss_kib() / 1024, len(gc.get_objects()))
        finally:
            app.shutdown()
        elapsed = time.perf_counter() - began
    print(f"\n## Memory over {runs} report runs of {series} series "
          f"({elapsed:.1f} s, {elapsed / runs * 1000:.1f} ms a run)")
    print(f"{'when':12} {'RSS MiB':>8} {'objects':>9}")
    for when, (rss, objects) in marks.items():
        print(f"{when:12} {rss:8.1f} {objects:9d}")
    print(f"{'baseline':12} {baseline:8.1f}           (fresh interpreter with the same libraries imported)")
    warm, end = marks["after 100"], marks[f"after {runs}"]
    growth = end[0] - warm[0]
    return [
        Figure("memory", f"RSS after {runs} runs of {series} series", f"{end[0]:.1f} MiB",
               f"{baseline:.1f} MiB (libraries only)", end[0] / baseline, RSS_TARGET, end[0] < RSS_LIMIT_MIB),
        Figure("memory", f"RSS growth from run 100 to run {runs}", f"{growth:+.1f} MiB ({end[1] - warm[1]:+d} objects)",
               "-", end[0] / warm[0], "no growth (< 1 MiB)", growth < 1.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.runs, args.series), args.json)


if __name__ == "__main__":
    main()
