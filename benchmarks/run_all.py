"""Every benchmark, each in a fresh process, then one summary table (Markdown) of ours against the stock
baselines measured in the same run.

    .venv/bin/python -m benchmarks.run_all [--quick]

About 10 minutes on 2 cores, 6 of them the patch status scan (10,000 calls at 50 ms, two at a time, then
its one-at-a-time baseline); `--quick` shortens every phase, for a smoke run, not for figures. A benchmark
that cannot run (nginx missing, say) is a failed row of the summary, and the others still run; the exit
status is then 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import PYTHON, REPO, Figure, load_figures, machine, print_figures, pytest_running

FULL = {
    "bench_scrape": ["--seconds", "5", "--requests", "20000"],
    "bench_nginx": ["--seconds", "4", "--rounds", "3"],
    "bench_inflight": ["--rounds", "4", "--requests", "2500", "--seconds", "4"],
    "bench_polling": [],
    "bench_memory": ["--runs", "1000", "--series", "1000"],
    "bench_ingest": [],
    "bench_startup": ["--runs", "7"],
    "bench_customers": ["--runs", "3"],
    "bench_abuse": [],
    "bench_patch_status": ["--runs", "1"],
}
QUICK = {
    "bench_scrape": ["--seconds", "1", "--requests", "2000"],
    "bench_nginx": ["--seconds", "1", "--rounds", "1"],
    "bench_inflight": ["--rounds", "1", "--requests", "500", "--seconds", "1"],
    "bench_polling": ["--minutes", "5"],
    "bench_memory": ["--runs", "200", "--series", "1000"],
    "bench_ingest": ["--old-mb", "0"],
    "bench_startup": ["--runs", "3"],
    "bench_customers": ["--runs", "1", "--customers", "50", "--devices", "1000"],
    "bench_abuse": ["--scrapes", "30", "--connections", "200", "--slow", "300"],
    "bench_patch_status": ["--runs", "1", "--customers", "20", "--devices", "400", "--latency", "0.01",
                           "--baseline-devices", "100"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run, not figures")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    disturbed = pytest_running()
    began = time.perf_counter()
    figures: list[Figure] = []
    not_run: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for module, module_args in (QUICK if args.quick else FULL).items():
            output = Path(tmp) / f"{module}.json"
            try:
                subprocess.run([PYTHON, "-m", f"benchmarks.{module}", *module_args, "--json", str(output)],
                               check=True, cwd=REPO, timeout=600)
            except subprocess.CalledProcessError as exc:
                not_run.append(module)
                figures.append(Figure(module, "ran", f"exit status {exc.returncode} (its output above)", "-",
                                      None, "runs", False))
            except subprocess.TimeoutExpired:
                not_run.append(module)
                figures.append(Figure(module, "ran", "still running after 600 s, stopped", "-", None, "runs",
                                      False))
            else:
                figures += load_figures(output)
            disturbed = disturbed or pytest_running()
    print("\n# Summary")
    print_figures(figures)
    met = sum(figure.met for figure in figures)
    print(f"\n{met}/{len(figures)} targets met in {time.perf_counter() - began:.0f} s on {machine()}")
    if disturbed or pytest_running():
        print("WARNING: a pytest run shared the CPUs during this run; the figures are disturbed, run it again")
    if not_run:
        sys.exit(1)


if __name__ == "__main__":
    main()
