"""Polite polling: GET polls and completion lag of one report run, for reports that take 1, 5 and 20 minutes
to generate, with the exporter's default schedule (poll_interval 2s doubling up to poll_max_interval 30s)
against the stock schedule of a naive poller (a fixed 2 s interval), and a fixed 30 s one for reference.

The real runner polls the simulator over loopback HTTP; time is a fake clock that the runner's sleeps
advance, so a 20-minute report takes well under a second. Reports whose length falls exactly on a poll would
show no lag at all, so each length is tried 0.5 s, 15 s and 29.5 s longer too, and the worst lag (and the
most polls) of those is reported.

    .venv/bin/python -m benchmarks.bench_polling [--minutes 1 5 20]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from benchmarks.common import SIMULATOR_JWT, Figure, finish

OURS = "ours (2 s doubling to 30 s)"
NAIVE = "fixed 2 s"
FIXED_30 = "fixed 30 s"
SCHEDULES = {OURS: None, NAIVE: (2.0, 2.0), FIXED_30: (30.0, 30.0)}  # None: the shipped defaults
OFFSETS = (0.0, 0.5, 15.0, 29.5)
REFERENCE_OFFSETS = (0.5, 29.5)  # the fixed schedules' worst cases


@dataclass(frozen=True)
class Polling:
    polls: int
    lag: float  # seconds from the report being ready to the exporter seeing COMPLETED
    sleeps: tuple[float, ...]


def measure(generation_time: float, schedule: tuple[float, float] | None) -> Polling:
    from exporter.app import Exporter
    from exporter.config import Config, NCentralSettings
    from exporter.reports import ReportSettings
    from exporter.simulator import Simulator

    clock = [0.0]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    report = ReportSettings(name="all", timeout=3 * 3600.0)
    if schedule is not None:
        report = ReportSettings(name="all", timeout=3 * 3600.0, poll_interval=schedule[0],
                                poll_max_interval=schedule[1])
    with Simulator(jwt=SIMULATOR_JWT, generation_time=generation_time, clock=lambda: clock[0]) as sim:
        config = Config(
            ncentral=NCentralSettings(url=sim.url, token=sim.jwt, request_timeout=5.0, retry_backoff=0.01),
            collections=(report,),
        )
        app = Exporter(config, sleep=fake_sleep, monotonic=lambda: clock[0])
        try:
            if not app.run("all"):
                raise AssertionError(f"the run failed: {app.store.snapshot['all'].last_error}")
        finally:
            app.shutdown()
        return Polling(sim.count("poll"), clock[0] - generation_time, tuple(sleeps))


def worst(generation: float, schedule: tuple[float, float] | None, offsets: tuple[float, ...]) -> Polling:
    """The most polls and the longest lag over reports `offsets` seconds longer than `generation`."""
    results = [measure(generation + offset, schedule) for offset in offsets]
    return Polling(max(r.polls for r in results), max(r.lag for r in results), results[0].sleeps)


def run(minutes: list[float]) -> list[Figure]:
    figures: list[Figure] = []
    print("\n## Polling one report run (fake clock; worst over report lengths +0, +0.5, +15, +29.5 s)")
    print(f"{'generation':>10}  {'schedule':28} {'GET polls':>9} {'lag s':>7} {'lag %':>6}")
    for length in minutes:
        generation = length * 60
        results = {
            name: worst(generation, schedule, OFFSETS if name == OURS else REFERENCE_OFFSETS)
            for name, schedule in SCHEDULES.items()
        }
        for name, result in results.items():
            print(f"{length:8g} m  {name:28} {result.polls:9d} {result.lag:7.1f} {result.lag / generation:6.1%}")
        ours, naive = results[OURS], results[NAIVE]
        print(f"{'':12}ours sleeps: {', '.join(f'{s:g}' for s in ours.sleeps[:8])}, ...", flush=True)
        targeted = length == 5
        figures.append(Figure(
            "polite polling", f"GET polls, {length:g}-minute report", str(ours.polls), f"{naive.polls} ({NAIVE})",
            ours.polls / naive.polls, "≤ 15" if targeted else "-", ours.polls <= 15 if targeted else True,
        ))
        figures.append(Figure(
            "polite polling", f"worst lag to seeing COMPLETED, {length:g}-minute report",
            f"{ours.lag:.1f} s ({ours.lag / generation:.1%})", f"{naive.lag:.1f} s ({NAIVE})", None,
            "≤ 10 % (30 s)" if targeted else "-", ours.lag <= 0.1 * generation if targeted else True,
        ))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 20.0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    args = parser.parse_args()
    finish(run(args.minutes), args.json)


if __name__ == "__main__":
    main()
