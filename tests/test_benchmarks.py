"""The benchmarks compare like with like: the stock baseline serves exactly the series ours serves, so a
metric added to the exporter but not to the baseline stops the comparison here, not in a benchmark run."""

from __future__ import annotations

from benchmarks.bench_scrape import check_equivalent
from benchmarks.common import ServerProcess


def test_the_stock_baseline_serves_the_same_series_as_ours() -> None:
    servers = [ServerProcess(kind, "--series", "100") for kind in ("stock", "ours")]
    try:
        assert check_equivalent(*servers) > 100
    finally:
        for server in servers:
            server.stop()


def test_the_simulator_serves_a_customer_estate_for_the_customer_benchmark() -> None:
    with ServerProcess("simulator", "--series", "10", "--customers", "5", "--devices", "50", "--latency", "0") as sim:
        assert int(sim.command("count devices")) == 0
