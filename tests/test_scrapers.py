"""Other scrapers than Prometheus: VictoriaMetrics single-node scrapes the exporter in --demo mode beside a
real Prometheus, and the same series with the same values arrive in both, the customer names that need
escaping (quotes, backslashes, `<`, regex characters, non-ASCII) included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml
from helpers import PROMETHEUS_DIR, ChildProcess, PrometheusServer, ReadyExporter, free_port, wait_for, write_yaml

from exporter.simulator import demo_estate

JOB = "ncentral-patch-exporter"
# The report and customer data: the values are the demo's, steady between runs. (Run counters and
# timestamps move with every run, so only their series are compared.)
DATA = ("ncentral_patch_approvals", "ncentral_patch_installs", "ncentral_customer_devices",
        "ncentral_customer_patch_issue_devices")
ALL = f'{{__name__=~"ncentral_.*", job="{JOB}"}}'

Series = dict[frozenset[tuple[str, str]], str]


class VictoriaMetricsServer(ChildProcess):
    """VictoriaMetrics single-node on a free loopback port, scraping `exporter` every second with the
    shipped scrape job; new samples are visible to queries at once (no latency offset)."""

    def __init__(self, tmp_path: Path, exporter: str) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
        (job,) = [job for job in shipped["scrape_configs"] if job["job_name"] == JOB]
        job["static_configs"] = [{"targets": [exporter]}]
        config = write_yaml(tmp_path / "victoria-scrape.yml",
                            {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [job]})
        super().__init__(
            ["victoria-metrics", f"-promscrape.config={config}", f"-storageDataPath={tmp_path / 'vm-data'}",
             f"-httpListenAddr={self.address}", "-search.latencyOffset=0s", "-search.disableCache",
             "-loggerLevel=ERROR"],
            tmp_path / "victoria-metrics.log", f"http://{self.address}/health",
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(f"http://{self.address}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200, f"{expr}: {response.status_code} {response.text[:500]}"
        answer = response.json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


def series(result: list[dict[str, Any]]) -> Series:
    """An instant query's result by label set (the name included) -> value as the API renders it."""
    return {frozenset(row["metric"].items()): row["value"][1] for row in result}


def data_only(found: Series) -> Series:
    return {labels: value for labels, value in found.items() if dict(labels)["__name__"] in DATA}


def test_victoriametrics_gets_the_series_and_values_prometheus_gets(tmp_path: Path) -> None:
    estate = {customer.name for customer in demo_estate().customers}
    exporter = ReadyExporter(tmp_path, "--demo")
    with (
        PrometheusServer(tmp_path, exporter.address, []) as prometheus,
        VictoriaMetricsServer(tmp_path, exporter.address) as victoria,
        exporter,
    ):
        def both() -> tuple[Series, Series] | None:
            """Both stores once each has every series, the customer scan's (published all at once) included."""
            ours, theirs = series(prometheus.query(ALL)), series(victoria.query(ALL))
            scanned = any("customer" in dict(labels) for labels in ours)
            return (ours, theirs) if scanned and set(ours) == set(theirs) else None

        in_prometheus, in_victoria = wait_for(both, timeout=30, interval=0.2)

    assert data_only(in_victoria) == data_only(in_prometheus)
    assert len(data_only(in_prometheus)) > 100
    names = {dict(labels)["__name__"] for labels in in_prometheus}
    assert {*DATA, "ncentral_patch_report_runs_total", "ncentral_patch_report_interval_seconds"} <= names
    arrived = {dict(labels)["customer"] for labels in in_victoria if "customer" in dict(labels)}
    assert len(arrived) > 30
    assert arrived <= estate
    assert {'Smith "Quotes" & <Sons>', "O'Brien\\Backslash IT", "東京テクノロジー株式会社",
            "Regex (Round) [Square] {Curly}|Pipe*+?.^"} <= arrived
