"""The patch status scan at scale: the real scan (client, store, exposition) against the simulator in its
own process holding 10,000 devices in 500 customers and answering every call after 50 ms. Prints the API
calls per run against the target (device pages + one call per device), the most calls in flight, the wall
time per run against devices * latency / 2, and the resident set before the first run, at its peak and
after the last; beside them the same scan with one call in flight (the side-by-side baseline, measured in
the same run on a smaller estate, `--baseline-devices`, as it takes twice as long per device).

    .venv/bin/python -m benchmarks.bench_patch_status [--runs 1] [--customers 500] [--devices 10000]
        [--latency 0.05] [--baseline-devices 2000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import dataclass

from benchmarks.common import SIMULATOR_JWT, Figure, ServerProcess, finish, peak_kib, rss_kib

# The simulator serves at most this many items a page, whatever the exporter asks for (it asks 1000).
PAGE_CAP = 500
RSS_GROWTH_LIMIT_MIB = 20e6 / 2**20  # "under 20 MB", read as 20·10⁶ bytes, the stricter reading
WALL_TOLERANCE = 0.10  # scan time within 10 % of devices * latency / 2


@dataclass(frozen=True)
class Scans:
    walls: list[float]  # seconds per run
    calls: list[int]  # API calls per run
    most: int  # most calls in flight
    before: float  # MiB resident before the first run
    peak: float  # MiB resident at the peak
    after: float  # MiB resident after the last run


def scan(customers: int, devices: int, latency: float, runs: int, max_in_flight: int) -> Scans:
    """`runs` scans of a fresh simulator's estate with `max_in_flight` calls at once: their calls, walls, the
    most in flight, and the resident set before, at the peak and after."""
    from exporter.app import Exporter
    from exporter.config import Config, NCentralSettings
    from exporter.patch_status import PATCH_STATUS, PatchStatusScan, PatchStatusSettings

    args = ["--series", "10", "--customers", str(customers), "--devices", str(devices), "--latency", str(latency)]
    with ServerProcess("simulator", *args) as sim:
        config = Config(
            ncentral=NCentralSettings(url=sim.url, token=SIMULATOR_JWT, request_timeout=10.0, retry_backoff=0.5),
            collections=(PatchStatusSettings(timeout=3 * 3600.0),),
        )
        app = Exporter(config)
        scan = app.runs[PATCH_STATUS]
        assert isinstance(scan, PatchStatusScan)
        scan.max_in_flight = max_in_flight

        def calls() -> int:
            return int(sim.command("count devices")) + int(sim.command("count service_monitor_status"))

        gc.collect()
        rss_before = rss_kib() / 1024
        walls: list[float] = []
        per_run: list[int] = []
        most = 0
        try:
            sim.command("max_in_flight")  # resets the simulator's count
            for number in range(1, runs + 1):
                before = calls()
                began = time.perf_counter()
                if not app.run(PATCH_STATUS):
                    raise AssertionError(f"run {number} failed: {app.store.snapshot[PATCH_STATUS].last_error}")
                walls.append(time.perf_counter() - began)
                per_run.append(calls() - before)
                most = max(most, int(sim.command("max_in_flight")))
                assert all(app.exposition.render_parts()) and all(app.exposition.render_parts(gzipped=True))
            peak = peak_kib() / 1024
            gc.collect()
            rss_after = rss_kib() / 1024
        finally:
            app.shutdown()
    return Scans(walls, per_run, most, rss_before, peak, rss_after)


def run(runs: int, customers: int, devices: int, latency: float, baseline_devices: int) -> list[Figure]:
    ours = scan(customers, devices, latency, runs, 2)
    baseline = scan(max(1, customers * baseline_devices // devices), baseline_devices, latency, 1, 1)
    walls, per_run, baseline_walls = ours.walls, ours.calls, baseline.walls
    pages = -(-devices // PAGE_CAP)
    target_calls = pages + devices
    wall = statistics.median(walls)
    ideal = devices * latency / 2
    per_device = wall / devices
    baseline_per_device = baseline_walls[0] / baseline_devices
    growth = ours.after - ours.before
    peak_growth = ours.peak - ours.before
    print(f"\n## Patch status scan: {devices} devices in {customers} customers, {latency * 1000:.0f} ms a call, "
          f"{runs} run(s)")
    print(f"calls per run      {', '.join(map(str, per_run))} (target {pages} device pages + {devices} "
          f"devices = {target_calls})")
    print(f"most in flight     {ours.most} (one at a time: {baseline.most})")
    print(f"wall per run       {', '.join(f'{w:.1f}' for w in walls)} s (median {wall:.1f} s; devices * latency / 2 "
          f"= {ideal:.1f} s; one at a time: {baseline_walls[0]:.1f} s for {baseline_devices} devices)")
    print(f"wall per device    {per_device * 1000:.2f} ms (one at a time: {baseline_per_device * 1000:.2f} ms)")
    print(f"RSS                {ours.before:.1f} MiB before the first run, peak {ours.peak:.1f} MiB, "
          f"{ours.after:.1f} MiB after run {runs} ({growth:+.1f} MiB)")
    return [
        Figure("patch status scan", f"API calls per run ({devices} devices, {customers} customers)",
               str(max(per_run)), f"{target_calls} (pages + devices)", max(per_run) / target_calls,
               "= pages + devices", all(count == target_calls for count in per_run)),
        Figure("patch status scan", "most calls in flight", f"{ours.most}",
               f"{baseline.most} (one at a time)", None, "≤ 2", ours.most <= 2),
        Figure("patch status scan", f"wall time per run ({latency * 1000:.0f} ms a call)", f"{wall:.1f} s",
               f"{ideal:.1f} s (devices * latency / 2)", wall / ideal, "within 10 %",
               abs(wall / ideal - 1) <= WALL_TOLERANCE),
        Figure("patch status scan", "wall time per device", f"{per_device * 1000:.2f} ms",
               f"{baseline_per_device * 1000:.2f} ms (one at a time)", per_device / baseline_per_device, "", True),
        Figure("patch status scan", f"RSS growth, peak over {runs} run(s)", f"{peak_growth:+.1f} MiB",
               f"{ours.before:.1f} MiB before", ours.peak / ours.before,
               "< 20 MB (19.1 MiB)", peak_growth < RSS_GROWTH_LIMIT_MIB),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the simulator takes per call")
    parser.add_argument("--baseline-devices", type=int, default=2_000,
                        help="devices of the one-call-at-a-time baseline's estate")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.runs, args.customers, args.devices, args.latency, args.baseline_devices), args.json)


if __name__ == "__main__":
    main()
