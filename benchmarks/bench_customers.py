"""The customer scan at scale: the real scan (client, store, exposition) against the simulator in its own
process holding 10,000 devices in 500 customers and answering every devices/active-issues call after 50 ms.
Prints the API calls per run against the target (device pages + one page per customer), the most calls in
flight, the wall time per run next to the same scan with one call in flight (the side-by-side baseline,
measured in the same run), and the resident set before the first run and after the last, with how much of
its growth the stale-agent and end-of-life counts add: the same runs in a process of their own against the
same estate with its devices bare (no operating system, every agent checked in recently) grow it by what
the scan costs without them.

    .venv/bin/python -m benchmarks.bench_customers [--runs 3] [--customers 500] [--devices 10000] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import time

from benchmarks.common import PYTHON, REPO, SIMULATOR_JWT, Figure, ServerProcess, finish, rss_kib

# The simulator serves at most this many items a page, whatever the exporter asks for (it asks 1000).
PAGE_CAP = 500
RSS_GROWTH_LIMIT_MIB = 20e6 / 2**20  # "under 20 MB", read as 20·10⁶ bytes, the stricter reading
STALE_EOL_LIMIT_MIB = 5e6 / 2**20  # the stale and end-of-life counts may add < 5 MB


def bare_growth(runs: int, customers: int, devices: int, latency: float) -> float:
    """The RSS growth (MiB) of the same runs, in a fresh process, against the estate with its devices bare."""
    output = subprocess.run(
        [PYTHON, "-m", "benchmarks.bench_customers", "--bare-devices", "--runs", str(runs), "--customers",
         str(customers), "--devices", str(devices), "--latency", str(latency)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=3600,
    ).stdout
    return float(output.strip().splitlines()[-1])


def run(runs: int, customers: int, devices: int, latency: float, bare: bool = False) -> list[Figure]:
    from exporter.app import Exporter
    from exporter.config import Config, NCentralSettings
    from exporter.customers import CUSTOMERS, CustomerData, CustomerScan, CustomerSettings

    class OneAtATime(CustomerScan):
        max_in_flight = 1

    args = ["--series", "10", "--customers", str(customers), "--devices", str(devices), "--latency", str(latency),
            *(["--bare-devices"] if bare else [])]
    with ServerProcess("simulator", *args) as sim:
        config = Config(
            ncentral=NCentralSettings(url=sim.url, token=SIMULATOR_JWT, request_timeout=10.0, retry_backoff=0.5),
            collections=(CustomerSettings(),),
        )
        app = Exporter(config)
        gc.collect()
        rss_before = rss_kib() / 1024

        def calls() -> int:
            return int(sim.command("count devices")) + int(sim.command("count active_issues"))

        walls: list[float] = []
        per_run: list[int] = []
        most = 0
        try:
            for number in range(1, runs + 1):
                before = calls()
                began = time.perf_counter()
                if not app.run(CUSTOMERS):
                    raise AssertionError(f"run {number} failed: {app.store.snapshot['customers'].last_error}")
                walls.append(time.perf_counter() - began)
                per_run.append(calls() - before)
                most = max(most, int(sim.command("max_in_flight")))
                assert all(app.exposition.render_parts()) and all(app.exposition.render_parts(gzipped=True))
            gc.collect()
            rss_after = rss_kib() / 1024
            result = app.store.snapshot[CUSTOMERS].result
            assert isinstance(result, CustomerData)
            series = 3 * len(result.rows) + len(result.systems)
            stale = sum(row.stale_devices for row in result.rows)
            end_of_life = sum(system.devices for system in result.systems if system.end_of_life)
        finally:
            app.shutdown()
        if bare:
            print(f"{rss_after - rss_before:.2f}")
            return []

        # The baseline: the same scan, one call at a time.
        sequential = Exporter(config)
        sequential.runs[CustomerSettings.kind] = OneAtATime(
            sequential.running_config, sequential.store, sequential.stop
        )
        try:
            began = time.perf_counter()
            assert sequential.run(CUSTOMERS)
            baseline_wall = time.perf_counter() - began
            baseline_most = int(sim.command("max_in_flight"))
        finally:
            sequential.shutdown()

    pages = -(-devices // PAGE_CAP)
    target_calls = pages + customers
    wall = statistics.median(walls)
    growth = rss_after - rss_before
    print(f"\n## Customer scan: {devices} devices in {customers} customers, {latency * 1000:.0f} ms a call, "
          f"{runs} runs, {series} series published")
    print(f"calls per run      {', '.join(map(str, per_run))} (target {pages} device pages + {customers} customers "
          f"= {target_calls})")
    print(f"most in flight     {most} (one at a time: {baseline_most})")
    print(f"wall per run       {', '.join(f'{w:.2f}' for w in walls)} s (median {wall:.2f} s; "
          f"one at a time: {baseline_wall:.2f} s)")
    print(f"RSS                {rss_before:.1f} MiB before the first run, {rss_after:.1f} MiB after run {runs} "
          f"({growth:+.1f} MiB)")
    without = bare_growth(runs, customers, devices, latency)
    added = growth - without
    print(f"stale / end-of-life {stale} / {end_of_life} devices; RSS growth {added:+.1f} MiB over the "
          f"{without:+.1f} MiB of the same runs with the devices bare (no OS, all checked in)")
    return [
        Figure("customer scan", f"API calls per run ({devices} devices, {customers} customers)",
               str(max(per_run)), f"{target_calls} (pages + customers)", max(per_run) / target_calls,
               "= pages + customers", all(count == target_calls for count in per_run)),
        Figure("customer scan", "most calls in flight", str(most), f"{baseline_most} (one at a time)", None,
               "≤ 2", most <= 2),
        Figure("customer scan", f"wall time per run ({latency * 1000:.0f} ms a call)", f"{wall:.2f} s",
               f"{baseline_wall:.2f} s (one at a time)", wall / baseline_wall, "", True),
        Figure("customer scan", f"RSS growth over {runs} runs", f"{growth:+.1f} MiB",
               f"{rss_before:.1f} MiB before", rss_after / rss_before, "< 20 MB (19.1 MiB)",
               growth < RSS_GROWTH_LIMIT_MIB),
        Figure("customer scan", f"RSS growth the stale and end-of-life counts add ({devices} devices)",
               f"{added:+.1f} MiB",
               f"{without:+.1f} MiB (devices bare: no OS, all checked in)", None, "< 5 MB (4.8 MiB)",
               added < STALE_EOL_LIMIT_MIB),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulator takes per call")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--bare-devices", action="store_true",
                        help="only print the RSS growth (MiB) of the runs against the estate with its devices bare")
    args = parser.parse_args()
    if args.bare_devices:
        run(args.runs, args.customers, args.devices, args.latency, bare=True)
        return
    finish(run(args.runs, args.customers, args.devices, args.latency), args.json)


if __name__ == "__main__":
    main()
