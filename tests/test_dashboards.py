"""The Grafana dashboard and provisioning files, and every dashboard query run through a real Prometheus.

No Grafana runs here. The dashboard JSON is checked for what file provisioning and the variables need, and
each panel query is run the way Grafana would send it (template variables interpolated with "All"
selected) through the Prometheus HTTP API, with Prometheus scraping the exporter in --demo mode.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import PROMETHEUS_DIR, REPO, PrometheusServer, ReadyExporter, wait_for

from exporter.lifecycle import DEFAULT_END_OF_LIFE_OS, is_end_of_life

DASHBOARDS = REPO / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "ncentral-patch-overview.json"
PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARIABLES = ("job", "instance", "report", "device_class")
# The Customers row's own filter: customer metrics carry no report label, so it narrows by job and instance.
CUSTOMER_VARIABLES = ("customer",)

# Which filters a query on each metric must select on (every metric is filtered by job and instance).
REPORT_METRICS = {
    "ncentral_patch_approvals", "ncentral_patch_installs", "ncentral_patch_report_last_run_success",
    "ncentral_patch_report_last_success_timestamp_seconds", "ncentral_patch_report_last_duration_seconds",
    "ncentral_patch_report_runs_total", "ncentral_patch_report_failures_total",
}
DEVICE_CLASS_METRICS = {"ncentral_patch_approvals"}
CUSTOMER_METRICS = {
    "ncentral_customer_devices", "ncentral_customer_patch_issue_devices", "ncentral_customer_stale_devices",
    "ncentral_customer_os_devices",
    "ncentral_customer_patch_status_devices",
    "ncentral_customer_patch_sla_breached_devices", "ncentral_customer_patch_scan_stale_devices",
}
# A metric name in a PromQL expression and, if present, its label matchers.
SELECTOR = re.compile(r"\b(ncentral_[a-z_]+|up)\b(\s*\{[^}]*\})?")
# Grafana escapes these characters in a multi-value / "All" variable for a Prometheus regex matcher.
REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
# Stand-ins for Grafana's interval variables; Prometheus here scrapes every second.
INTERVAL_VARIABLES = {
    "$__rate_interval": "5s", "$__interval": "2s", "$__range": "1h", "${__range}": "1h",
    "$__range_s": "3600", "$__range_ms": "3600000",
}


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, also those inside collapsed rows, except the rows themselves."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def variables_of(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def selectors(expr: str) -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2) or "") for match in SELECTOR.finditer(expr)]


def all_dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


# --- static checks -----------------------------------------------------------------------------------


def test_there_is_a_dashboard() -> None:
    assert DASHBOARD in all_dashboards()


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_dashboard_is_provisionable(path: Path) -> None:
    text = path.read_text()
    dashboard = load_dashboard(path)
    assert dashboard["uid"] == "ncentral-patch-overview"
    assert 0 < len(dashboard["uid"]) <= 40
    assert dashboard.get("id") is None
    assert dashboard["title"]
    # __inputs / ${DS_...} only work through the import dialog and break file provisioning.
    assert "__inputs" not in dashboard
    assert "__requires" not in dashboard
    assert "${DS_" not in text
    assert "$DS_" not in text


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_dashboard_variables(path: Path) -> None:
    variables = variables_of(load_dashboard(path))
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    assert list(variables) == ["datasource", *FILTER_VARIABLES, *CUSTOMER_VARIABLES]
    for name in (*FILTER_VARIABLES, *CUSTOMER_VARIABLES):
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == DATASOURCE_REF, name
        assert variable["multi"] is True, name
        assert variable["includeAll"] is True, name
        assert variable["refresh"] in (1, 2), name  # on load / on time range change
        assert variable_query(variable).startswith("label_values("), name
    # Each variable narrows by the ones before it.
    for index, name in enumerate(FILTER_VARIABLES):
        query = variable_query(variables[name])
        for earlier in FILTER_VARIABLES[1:index]:
            assert f'{earlier}=~"${earlier}"' in query, (name, query)
        if index > 0:
            assert 'job=~"$job"' in query, (name, query)
    for name in CUSTOMER_VARIABLES:
        query = variable_query(variables[name])
        assert 'job=~"$job", instance=~"$instance"' in query, (name, query)
        assert query.startswith("label_values(ncentral_customer_devices{"), (name, query)


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_every_panel_uses_the_datasource_variable(path: Path) -> None:
    panels = panels_of(load_dashboard(path))
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_every_query_selects_on_the_variables(path: Path) -> None:
    for panel in panels_of(load_dashboard(path)):
        for target in panel["targets"]:
            expr = target["expr"]
            found = selectors(expr)
            assert found, (panel["title"], expr)
            for metric, matchers in found:
                where = (panel["title"], metric, expr)
                assert matchers, f"metric without label matchers: {where}"
                assert 'job=~"$job"' in matchers, where
                assert 'instance=~"$instance"' in matchers, where
                if metric in REPORT_METRICS:
                    assert 'report=~"$report"' in matchers, where
                if metric in DEVICE_CLASS_METRICS:
                    assert 'device_class=~"$device_class"' in matchers, where
                if metric in CUSTOMER_METRICS:
                    assert 'customer=~"$customer"' in matchers, where


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_every_panel_is_described_and_has_units(path: Path) -> None:
    dashboard = load_dashboard(path)
    for panel in panels_of(dashboard):
        assert len(panel.get("description", "")) >= 20, panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
    panels = panels_of(dashboard)
    ratios = [panel for panel in panels if panel["fieldConfig"]["defaults"]["unit"] == "percentunit"]
    assert ratios, "the share approved for install is shown as a percentage"
    for panel in ratios:
        assert panel["fieldConfig"]["defaults"].get("min") == 0, panel["title"]  # set, not left to Grafana


@pytest.mark.parametrize("path", all_dashboards(), ids=lambda path: path.name)
def test_panel_layout(path: Path) -> None:
    dashboard = load_dashboard(path)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert 0 < pos["w"] <= 24 - pos["x"], panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_covers_the_metrics() -> None:
    """Totals per approval status, the backlog, install outcomes and exporter health are all shown."""
    exprs = "\n".join(target["expr"] for panel in panels_of(load_dashboard()) for target in panel["targets"])
    for status in ("approved_for_install", "no_approval", "not_approved", "declined", "approved_for_removal"):
        assert f'approval_status="{status}"' in exprs, status
    for status in ("failed", "installed_with_errors", "aborted"):
        assert status in exprs, status
    for metric in (
        "ncentral_patch_report_last_run_success", "ncentral_patch_report_last_success_timestamp_seconds",
        "ncentral_patch_report_last_duration_seconds", "ncentral_patch_report_failures_total",
    ):
        assert metric in exprs, metric
    assert "time() - ncentral_patch_report_last_success_timestamp_seconds" in exprs
    assert "sum by (patch_type" in exprs


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True


def test_dashboard_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- every panel query against a real Prometheus -----------------------------------------------------


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana's Prometheus data source interpolates it into `=~"..."`."""
    escaped = [REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))
               for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, values: dict[str, list[str]]) -> str:
    for name in sorted(INTERVAL_VARIABLES, key=len, reverse=True):  # $__range_s before $__range
        expr = expr.replace(name, INTERVAL_VARIABLES[name])
    # Longest names first, so $instance is not taken for $in...; ${name} as well as $name.
    for name in sorted(values, key=len, reverse=True):
        # "All" of a variable with a custom all value (`allValue`) is sent as that value, not the list.
        regex = values[name][0][len(ALL_VALUE):] if values[name][0].startswith(ALL_VALUE) else grafana_regex(
            values[name])
        expr = expr.replace("${" + name + "}", regex).replace("$" + name, regex)
    assert "$" not in expr, f"uninterpolated variable in {expr}"
    return expr


ALL_VALUE = "<all>"


def all_of(variable: dict[str, Any], values: list[str]) -> list[str]:
    """What Grafana sends for "All": the variable's custom all value, or every value."""
    return [ALL_VALUE + variable["allValue"]] if variable.get("allValue") else values


def label_values(prometheus: PrometheusServer, query: str, start: float) -> list[str]:
    """A `label_values(selector, label)` variable query, sent as Grafana sends it."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip(), re.DOTALL)
    assert match, query
    selector, label = match.groups()
    values = prometheus.api(f"label/{label}/values", **{"match[]": selector, "start": f"{start:.3f}"})
    return sorted(values)


def all_selected(
    prometheus: PrometheusServer, dashboard: dict[str, Any], started: float, *, custom_all: bool = True
) -> dict[str, list[str]]:
    """Each variable's values with "All" selected, in dashboard order (each narrows by the ones before);
    without `custom_all`, every value even where Grafana sends a custom all value instead."""
    variables = variables_of(dashboard)
    values: dict[str, list[str]] = {}
    for name in (*FILTER_VARIABLES, *CUSTOMER_VARIABLES):
        values[name] = label_values(prometheus, interpolate(variable_query(variables[name]), values), started)
        if custom_all:
            values[name] = all_of(variables[name], values[name])
    return values


@pytest.fixture(scope="module")
def demo_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, str, float]]:
    """Prometheus (with the shipped rules) scraping the exporter in --demo mode, with a few scrapes in; one
    for the module, as the tests only query it."""
    tmp_path = tmp_path_factory.mktemp("dashboards")
    started = time.time()
    exporter = ReadyExporter(tmp_path, "--demo")
    # Prometheus first: its target discovery takes a few seconds, which the exporter's start-up overlaps.
    rules = [PROMETHEUS_DIR / "alerts.yml"]
    with PrometheusServer(tmp_path, exporter.address, rules) as prometheus, exporter:
        # At least three samples of the report data, so delta() and increase() have something to work on.
        wait_for(lambda: prometheus.query("count_over_time(ncentral_patch_report_last_run_success[1m]) >= 3"),
                 timeout=20)
        # The runs' health is there from the first scrape, their results only once each has finished: the
        # report's and the customer scan's (on its own worker) in either order.
        for result in ("ncentral_patch_approvals", "ncentral_customer_stale_devices"):
            wait_for(partial(prometheus.query, result), timeout=30)
        # The patch status scan (one call per device) takes longer than the reports; a few samples of it
        # too, so a range query's last step (up to a second before its end) finds one.
        wait_for(lambda: prometheus.query("count_over_time(ncentral_customer_patch_status_devices[1m]) >= 3"),
                 timeout=60)
        yield prometheus, exporter.address, started


def test_every_dashboard_query_returns_data(demo_prometheus: tuple[PrometheusServer, str, float]) -> None:
    prometheus, exporter, started = demo_prometheus
    dashboard = load_dashboard()
    variables = variables_of(dashboard)

    # The variables, in dashboard order, each with "All" selected.
    values: dict[str, list[str]] = {}
    for name in (*FILTER_VARIABLES, *CUSTOMER_VARIABLES):
        query = interpolate(variable_query(variables[name]), values)
        values[name] = label_values(prometheus, query, started)
        assert values[name], f"variable {name} ({query}) has no values"
        values[name] = all_of(variables[name], values[name])
    assert values["job"] == ["ncentral-patch-exporter"]
    assert values["instance"] == [exporter]
    # The scans' run health is under their names.
    assert values["report"] == ["all", "customers", "patch_status"]
    assert {"Laptops - Windows", "Workstations - Windows"} <= set(values["device_class"])

    end = time.time()
    checked = 0
    for panel in panels_of(dashboard):
        for target in panel["targets"]:
            expr = interpolate(target["expr"], values)
            where = f"panel {panel['title']!r}, query {expr}"
            if target.get("instant"):
                result = prometheus.query(expr, time=f"{end:.3f}")
            else:
                result = prometheus.query(expr, start=f"{started:.3f}", end=f"{end:.3f}", step="1")
            assert result, f"no data: {where}"
            checked += 1
    assert checked >= 20

    # Spot checks against the demo data (the vendor's example numbers).
    per_class = {
        (row["metric"]["device_class"], row["metric"]["approval_status"]): float(row["value"][1])
        for row in prometheus.query(interpolate(
            "sum by (device_class, approval_status) (ncentral_patch_approvals"
            '{job=~"$job", instance=~"$instance", report=~"$report", device_class=~"$device_class"})',
            values))
    }
    assert per_class[("Laptops - Windows", "no_approval")] == 150
    assert per_class[("Laptops - Windows", "approved_for_install")] == 6424
    assert per_class[("Workstations - Windows", "declined")] == 414


def test_customer_row_against_prometheus(demo_prometheus: tuple[PrometheusServer, str, float]) -> None:
    """The Customers row's queries, with every customer selected (names that need escaping in a Grafana
    regex, non-ASCII ones), give the demo estate's exact totals; selecting one customer narrows to it."""
    from exporter.simulator import demo_estate

    prometheus, _, started = demo_prometheus
    dashboard = load_dashboard()
    variables = variables_of(dashboard)
    values = all_selected(prometheus, dashboard, started, custom_all=False)
    estate = demo_estate()
    published = estate.customers  # the refused one too: its devices come from the device list
    assert values["customer"] == sorted({c.name for c in published})
    # 500 customers would make a 500-name regex, and Grafana does not escape `"` in one: "All" is `.*`.
    assert variables["customer"]["allValue"] == ".*"
    values["customer"] = all_of(variables["customer"], values["customer"])
    exprs = {
        target["refId"]: target["expr"]
        for panel in panels_of(dashboard) if panel["title"] == "Customers" for target in panel["targets"]
    }
    devices = prometheus.query(interpolate(exprs["A"], values))
    ids = {c.customer_id for c in published}
    assert sum(float(row["value"][1]) for row in devices) == sum(1 for d in estate.devices if d.customer_id in ids)
    assert {row["metric"]["customer_id"] for row in devices} == {str(i) for i in ids}
    # One customer whose name needs regex escaping, as Grafana sends it when it alone is selected.
    tricky = next(c for c in published if c.name.startswith("Regex ("))
    one = prometheus.query(interpolate(exprs["C"], {**values, "customer": [tricky.name]}))
    assert [row["metric"]["customer"] for row in one] == [tricky.name]

    # Stale and end-of-life devices per customer (0 where none), and the operating systems across the estate.
    today = dt.datetime.now(dt.UTC).date()

    def end_of_life(os_name: str | None) -> bool:
        return is_end_of_life(DEFAULT_END_OF_LIFE_OS, os_name or "unknown", today)

    stale = Counter(d.customer_id for d in estate.devices
                    if d.checkin is None or (isinstance(d.checkin, float) and d.checkin > 7 * 86400))
    old_os = Counter(d.customer_id for d in estate.devices if end_of_life(d.os))
    assert sum(stale.values()) > 0 and sum(old_os.values()) > 0
    panels = {panel["title"]: panel for panel in panels_of(dashboard)}

    def per_customer(expr: str) -> dict[int, float]:
        return {int(row["metric"]["customer_id"]): float(row["value"][1])
                for row in prometheus.query(interpolate(expr, values))}

    table = [target["expr"] for target in panels["Stale and end-of-life devices per customer"]["targets"]]
    assert per_customer(table[1]) == {i: stale[i] for i in ids}
    assert per_customer(table[3]) == {i: old_os[i] for i in ids}
    (total,) = prometheus.query(interpolate(panels["Devices on an end-of-life OS"]["targets"][0]["expr"], values))
    assert float(total["value"][1]) == sum(old_os.values())
    systems = prometheus.query(interpolate(panels["Operating systems"]["targets"][0]["expr"], values))
    assert {(row["metric"]["os"], row["metric"]["end_of_life"]): float(row["value"][1]) for row in systems} == (
        Counter((d.os, str(end_of_life(d.os)).lower()) for d in estate.devices))


def test_patch_compliance_row_against_prometheus(demo_prometheus: tuple[PrometheusServer, str, float]) -> None:
    """Each customer's compliance is its normal devices over those with a patch service, 0 (not missing) for
    a customer without one normal device; the estate gauge is the same ratio over all of them."""
    prometheus, _, started = demo_prometheus
    dashboard = load_dashboard()
    values = all_selected(prometheus, dashboard, started)
    panels = {panel["title"]: panel for panel in panels_of(dashboard)}
    exprs = {target["refId"]: target["expr"] for target in panels["Patch compliance per customer"]["targets"]}

    def per_customer(expr: str) -> dict[str, float]:
        return {row["metric"]["customer_id"]: float(row["value"][1])
                for row in prometheus.query(interpolate(expr, values))}

    compliance, normal, monitored = per_customer(exprs["A"]), per_customer(exprs["B"]), per_customer(exprs["C"])
    assert compliance and set(compliance) == set(monitored)
    for customer_id, share in compliance.items():
        assert share == pytest.approx(normal.get(customer_id, 0.0) / monitored[customer_id]), customer_id
    (estate,) = prometheus.query(interpolate(panels["Patch compliance (estate)"]["targets"][0]["expr"], values))
    assert float(estate["value"][1]) == pytest.approx(sum(normal.values()) / sum(monitored.values()))
    # Customers without a single normal device (asked as a state no device has): compliance 0, not missing.
    none_normal = prometheus.query(interpolate(exprs["A"].replace('state="normal"', 'state="no_such_state"'),
                                               values))
    assert {row["metric"]["customer_id"] for row in none_normal} == set(monitored)
    assert all(float(row["value"][1]) == 0 for row in none_normal)
