"""The patch status scan: its config section, N-central's time forms, the parsing of one device's services,
and end-to-end runs against the simulator over real HTTP (exact counts per customer, class and state,
scan-stale and SLA-breached devices, 404s, 429s, unknown states, both services on one device, the offset
of a time written without one), the state file and the landing page. (`--demo --once` is checked in
test_customers.py, which runs it once for both scans.)"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MakeApp
from helpers import REPO, Samples, config_document, run_command, sample, scrape, select, write_yaml

from exporter import landing
from exporter.app import Exporter
from exporter.config import ConfigError, log_notices
from exporter.config_file import parse_config
from exporter.customers import CUSTOMERS
from exporter.patch_status import PATCH_STATUS, PatchService, PatchStatusSettings, patch_service
from exporter.simulator import (
    LEGACY_PATCH_SERVICE,
    PATCH_SERVICE,
    Estate,
    EstateCustomer,
    EstateDevice,
    Simulator,
)
from exporter.simulator.services import DAY, HOUR, DeviceServices, EstateService
from exporter.timestamps import parse_timestamp

WS, LAPTOP, SERVER = "Workstations - Windows", "Laptops - Windows", "Servers - Windows"
ALPHA, BETA, GAMMA = 11, 12, 13
ALPHA_NAME, BETA_NAME = 'Alpha & <Co> "AG"', "Beta GmbH"
BASE: dict[str, Any] = {"ncentral": {"url": "https://n.example", "api_token": "x"}}


def v2(state: str | None, scan_age: float | None, transition_age: float | None, form: str = "nable",
       **more: Any) -> EstateService:
    return EstateService(PATCH_SERVICE, state, scan_age, transition_age, form, **more)


OTHER = EstateService("Disk Space", "Normal", HOUR, 3 * DAY)
# A small estate whose every count is known by hand (SLA 14d, stale after 7d).
CUSTOMERS_ = (EstateCustomer(ALPHA, ALPHA_NAME), EstateCustomer(BETA, BETA_NAME), EstateCustomer(GAMMA, "Test Gamma"))
DEVICES = (
    *(EstateDevice(device_id, ALPHA, WS) for device_id in (101, 102, 103, 104, 105)),
    *(EstateDevice(device_id, ALPHA, SERVER) for device_id in (106, 107, 108)),
    *(EstateDevice(device_id, BETA, LAPTOP) for device_id in (201, 202, 203, 216)),
    *(EstateDevice(device_id, BETA, WS) for device_id in range(204, 216)),
    EstateDevice(301, GAMMA, WS),
)
SERVICES = (
    DeviceServices(101, (OTHER, v2("Normal", HOUR, 30 * DAY))),  # normal for long: no breach
    DeviceServices(102, (v2("Failed", 2 * HOUR, 15 * DAY),)),  # breached
    DeviceServices(103, (v2("Failed", 8 * DAY, 13 * DAY), OTHER)),  # scan stale, within the SLA
    # Both services: the old one listed first, but patch_services names v2 first: v2's state counts.
    DeviceServices(104, (EstateService(LEGACY_PATCH_SERVICE, "Normal", HOUR, DAY), OTHER,
                         v2("Warning", HOUR, 20 * DAY))),
    DeviceServices(105, (OTHER,)),  # no patch service
    DeviceServices(106, (v2("Reboot Pending", None, 10 * DAY),)),  # a state nobody told the exporter of; no scan
    DeviceServices(107, refused=404),  # deleted since listed
    # The transition time is local time without an offset (-0500 from lastScanTime): 3 hours within the SLA.
    # Read as UTC it would be 2 hours past it.
    DeviceServices(108, (v2("Warning", HOUR, 14 * DAY - 3 * HOUR),)),
    DeviceServices(201, (v2("No Data", HOUR, 16 * DAY, "rfc3339"),)),  # RFC 3339 with an offset
    # The module name in another case; RFC 3339 in UTC; scanned 10 days ago.
    DeviceServices(202, (EstateService("patch status V2", "Stale", 10 * DAY, 2 * DAY, "utc"),)),
    DeviceServices(203, (v2("Disconnected", HOUR, 20 * DAY, "garbled"),)),  # unreadable: stale, no breach
    DeviceServices(204, (v2("Misconfigured", HOUR, 14 * DAY + HOUR, "no_offset"),)),  # no offset at all: UTC
    DeviceServices(205, (EstateService(LEGACY_PATCH_SERVICE, "Normal", HOUR, 40 * DAY),)),  # the old one only
    # East of UTC (+0500): 3 hours past the SLA; read as UTC it would be 2 hours within it.
    DeviceServices(216, (v2("Warning", HOUR, 14 * DAY + 3 * HOUR, utc_offset=5 * 3600),)),
    *(DeviceServices(device_id, (v2("Normal", HOUR, 5 * DAY),)) for device_id in range(206, 216)),
    DeviceServices(301, (v2("Failed", HOUR, 30 * DAY),)),  # excluded customer: never asked
)
KEPT = 24  # devices of Alpha and Beta: one call each
# (customer_id, customer, device_class, state) → devices
EXPECTED_STATES = {
    (ALPHA, ALPHA_NAME, WS, "normal"): 1,
    (ALPHA, ALPHA_NAME, WS, "failed"): 2,
    (ALPHA, ALPHA_NAME, WS, "warning"): 1,
    (ALPHA, ALPHA_NAME, WS, "not_monitored"): 1,
    (ALPHA, ALPHA_NAME, SERVER, "reboot_pending"): 1,
    (ALPHA, ALPHA_NAME, SERVER, "warning"): 1,
    (BETA, BETA_NAME, LAPTOP, "warning"): 1,
    (BETA, BETA_NAME, LAPTOP, "no_data"): 1,
    (BETA, BETA_NAME, LAPTOP, "stale"): 1,
    (BETA, BETA_NAME, LAPTOP, "disconnected"): 1,
    (BETA, BETA_NAME, WS, "misconfigured"): 1,
    (BETA, BETA_NAME, WS, "normal"): 11,
}
# (customer_id, customer, device_class) → (scan-stale devices, SLA-breached devices)
EXPECTED_GROUPS = {
    (ALPHA, ALPHA_NAME, WS): (1, 2),
    (ALPHA, ALPHA_NAME, SERVER): (1, 0),
    (BETA, BETA_NAME, LAPTOP): (2, 2),
    (BETA, BETA_NAME, WS): (0, 1),
}


def small_estate(**refused: int | None) -> Estate:
    """The estate above; `refused` maps "d<device id>" to the status that device answers instead."""
    services = tuple(
        DeviceServices(entry.device_id, entry.services, refused.get(f"d{entry.device_id}", entry.refused))
        for entry in SERVICES
    )
    return Estate(CUSTOMERS_, DEVICES, (), services)


@pytest.fixture
def estate_sim(sim: Simulator) -> Simulator:
    sim.set_estate(small_estate())
    sim.set_page_cap(10)  # 26 devices → 3 pages
    return sim


def config(sim: Simulator, section: dict[str, Any] | None = None, **ncentral: Any) -> dict[str, Any]:
    """The shared test config with this `patch_status` section (by default: test customers excluded)."""
    return config_document(sim, sections={PATCH_STATUS: section if section is not None else {"exclude": "^Test "}},
                       ncentral=ncentral)


def settings_of(document: dict[str, Any]) -> PatchStatusSettings:
    settings = parse_config(document, env={}).collection(PATCH_STATUS)
    assert isinstance(settings, PatchStatusSettings)
    return settings


def published(app: Exporter) -> tuple[dict[Any, float], dict[Any, tuple[float, float]], Samples]:
    """The states per (customer id, customer, class, state) and the (stale, breached) per class."""
    samples = scrape(app)
    states = {}
    for labels, value in select(samples, "ncentral_customer_patch_status_devices").items():
        tags = dict(labels)
        states[(int(tags["customer_id"]), tags["customer"], tags["device_class"], tags["state"])] = value
    stale = select(samples, "ncentral_customer_patch_scan_stale_devices")
    breached = select(samples, "ncentral_customer_patch_sla_breached_devices")
    assert set(stale) == set(breached), "every class present has both, zeros included"
    groups = {}
    for labels, value in stale.items():
        tags = dict(labels)
        groups[(int(tags["customer_id"]), tags["customer"], tags["device_class"])] = (value, breached[labels])
    return states, groups, samples


# --- config ------------------------------------------------------------------------------------------


def test_section_absent_means_off_and_empty_means_defaults() -> None:
    assert parse_config(BASE, env={}).collection(PATCH_STATUS) is None
    settings = settings_of({**BASE, PATCH_STATUS: None})
    assert settings is not None
    assert (settings.interval, settings.timeout) == (6 * HOUR, HOUR)
    assert (settings.scan_stale_after, settings.sla) == (7 * DAY, 14 * DAY)
    assert settings.patch_services == ("Patch Status v2", "Patch Status")
    assert settings.max_devices == 50_000
    assert settings.include is None and settings.exclude is None
    assert not isinstance(parse_config({**BASE, "reports": [{"name": PATCH_STATUS}]}, env={}).collection(PATCH_STATUS),
                          PatchStatusSettings)


def test_the_section_read_whole() -> None:
    settings = settings_of({**BASE, PATCH_STATUS: {
        "interval": "12h", "timeout": "2h", "patch_services": ["Patch Status", "patch status", "Patch Status v2"],
        "scan_stale_after": "3d", "sla": "1w", "include": "GmbH", "exclude": "^Test ", "max_devices": 10,
    }})
    assert settings is not None
    assert settings.patch_services == ("Patch Status", "Patch Status v2")  # each once, in order
    assert (settings.interval, settings.timeout, settings.scan_stale_after, settings.sla) == (
        12 * HOUR, 2 * HOUR, 3 * DAY, 7 * DAY)
    assert settings.wanted("Beta GmbH") and not settings.wanted("Test GmbH") and not settings.wanted("Alpha AG")
    assert settings.max_devices == 10


@pytest.mark.parametrize(("section", "expected"), [
    ({"interval": "soon"}, "patch_status.interval: invalid duration"),
    ({"sla": 0}, "patch_status.sla: duration must be greater than zero"),
    ({"scan_stale_after": "-1d"}, "patch_status.scan_stale_after: invalid duration"),
    ({"timeout": True}, "patch_status.timeout: invalid duration"),
    ({"include": "(unclosed"}, "patch_status.include: invalid regular expression"),
    ({"patch_services": []}, "patch_status.patch_services: must be a non-empty list"),
    ({"max_devices": 0}, "patch_status.max_devices: must be a whole number"),
    ({"colour": "red"}, "patch_status.colour: unknown key"),
])
def test_bad_section_is_one_clear_line(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, PATCH_STATUS: section}, env={})
    assert expected in str(error.value)


def test_bad_section_exits_2_with_one_line(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "config.yml", {**BASE, "reports": [{"name": "all"}, {"name": PATCH_STATUS}],
                                                PATCH_STATUS: {}})
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "reports[1].name: 'patch_status' is the patch status scan's name; choose another" in line


def test_interval_below_1h_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        log_notices(parse_config({**BASE, PATCH_STATUS: {"interval": "1h"}}, env={}))
        assert not caplog.records
        log_notices(parse_config({**BASE, PATCH_STATUS: {"interval": "30m"}}, env={}))
    assert "patch_status.interval is below 1h" in caplog.text


# --- times and one device's answer -----------------------------------------------------------------------

UTC_1525 = dt.datetime(2024, 2, 28, 15, 25, 5, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("text", "utc_seconds"), [
    ("2024-02-28 15:25:05.939 -0500", UTC_1525 + 5 * 3600 + 0.939),  # N-able's example
    ("2024-02-28 15:25:05 +0130", UTC_1525 - 1.5 * 3600),
    ("2024-02-28T15:25:05Z", UTC_1525),
    ("2024-02-28T15:25:05.5z", UTC_1525 + 0.5),
    ("2024-02-28T15:25:05-05:00", UTC_1525 + 5 * 3600),
    ("2024-02-28T15:25:05.123456789+00:00", UTC_1525 + 0.123456789),
])
def test_timestamps_with_an_offset(text: str, utc_seconds: float) -> None:
    stamp = parse_timestamp(text)
    assert stamp is not None
    assert stamp.seconds(9 * 3600) == pytest.approx(utc_seconds)  # their own offset, not the default


@pytest.mark.parametrize("text", ["2024-02-28 15:25:05.939", "2024-02-28T15:25:05", " 2024-02-28 15:25:05 "])
def test_timestamps_without_an_offset_take_the_given_one_else_utc(text: str) -> None:
    stamp = parse_timestamp(text)
    assert stamp is not None
    assert stamp.seconds(None) == pytest.approx(UTC_1525, abs=1)
    assert stamp.seconds(-5 * 3600) == pytest.approx(UTC_1525 + 5 * 3600, abs=1)


@pytest.mark.parametrize("value", [
    None, "", "yesterday", "2024-02-30 10:00:00", "2024-02-28 25:00:00", "2024-02-28", "2024-02-28 15:25",
    "2024-02-28 15:25:05 +2500", 1709133905, "2024-02-28 15:25:05.939 -0500 extra", "9" * 100,
    "\u0662\u0660\u0662\u0664-02-28 15:25:05",  # digits, but not ASCII ones
])
def test_unreadable_timestamps_are_none(value: object) -> None:
    assert parse_timestamp(value) is None


def record(module: object, state: object = "Normal", scan: object = None, transition: object = None) -> dict[str, Any]:
    return {"moduleName": module, "stateStatus": state, "lastScanTime": scan, "transitionTime": transition}


SERVICES_NAMED = ("Patch Status v2", "Patch Status")


def test_the_first_named_service_wins_without_regard_to_case() -> None:
    body = {"data": [record("Patch Status", "Failed"), record("CPU"), record(" PATCH STATUS V2 ", "Normal")]}
    assert patch_service(body, SERVICES_NAMED, "x") == PatchService("normal", None, None)
    assert patch_service(body, ("patch status", "Patch Status v2"), "x") == PatchService("failed", None, None)
    assert patch_service({"data": [record("CPU"), record(None)], "totalItems": 2}, SERVICES_NAMED, "x") is None
    assert patch_service({"data": []}, SERVICES_NAMED, "x") is None


@pytest.mark.parametrize(("state", "label"), [
    ("No Data", "no_data"), ("Normal", "normal"), ("MISCONFIGURED", "misconfigured"),
    ("rebootPending", "reboot_pending"),
    (None, "unknown"), ("", "unknown"), ("!!!", "unknown"), ("Very " * 30, ("very_" * 8).rstrip("_")),
])
def test_states_are_snake_case_within_a_bounded_length(state: object, label: str) -> None:
    service = patch_service({"data": [record(PATCH_SERVICE, state)]}, SERVICES_NAMED, "x")
    assert service is not None and service.state == label
    assert len(service.state) <= 40


def test_a_transition_without_offset_takes_that_of_the_scan_time_in_the_same_record() -> None:
    body = {"data": [record(PATCH_SERVICE, "Failed", "2024-02-28 15:25:05.939 -0500", "2024-02-28 15:40:42.407")]}
    service = patch_service(body, SERVICES_NAMED, "x")
    assert service is not None and service.last_scan is not None and service.transition is not None
    assert service.transition - service.last_scan == pytest.approx(15 * 60 + 36.468)  # 15 minutes after, not 5 h before
    alone = patch_service({"data": [record(PATCH_SERVICE, "Failed", None, "2024-02-28 15:40:42.407")]},
                          SERVICES_NAMED, "x")
    assert alone is not None and alone.transition == pytest.approx(UTC_1525 + 15 * 60 + 36.407)  # UTC


def test_unreadable_times_are_flagged_and_missing_ones_are_not() -> None:
    service = patch_service({"data": [record(PATCH_SERVICE, "Failed", "soon", "later")]}, SERVICES_NAMED, "x")
    assert service == PatchService("failed", None, None, True, True)
    service = patch_service({"data": [record(PATCH_SERVICE, "Failed")]}, SERVICES_NAMED, "x")
    assert service == PatchService("failed", None, None, False, False)


@pytest.mark.parametrize("body", [{}, {"data": {}}, {"data": ["x"]}, {"data": [record(PATCH_SERVICE, 5)]}])
def test_answers_of_another_shape_are_invalid(body: dict[str, Any]) -> None:
    from exporter.errors import InvalidResponse

    with pytest.raises(InvalidResponse):
        patch_service(body, SERVICES_NAMED, "x")


# --- end to end against the simulator -------------------------------------------------------------------


def test_exact_counts_end_to_end(estate_sim: Simulator, make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(config(estate_sim))
    with caplog.at_level(logging.WARNING, logger="exporter.patch_status"):
        assert app.run(PATCH_STATUS)
    states, groups, samples = published(app)
    assert states == EXPECTED_STATES
    assert groups == EXPECTED_GROUPS
    for reason, count in (("not_found", 1), ("forbidden", 0), ("invalid_response", 0)):
        assert sample(samples, "ncentral_patch_status_device_errors_total", reason=reason) == count
    assert sample(samples, "ncentral_patch_report_last_run_success", report=PATCH_STATUS) == 1
    assert sample(samples, "ncentral_patch_report_runs_total", report=PATCH_STATUS) == 1
    # Calls: the device pages, then one per device kept (Test Gamma's left out).
    assert estate_sim.count("devices") == 3
    asked = [r.route for r in estate_sim.requests if r.endpoint == "service_monitor_status"]
    assert sorted(asked) == sorted(f"/api/devices/{d.device_id}/service-monitor-status"
                                   for d in DEVICES if d.customer_id != GAMMA)
    assert estate_sim.max_in_flight <= 2
    # The unreadable times are counted once per scan in one line.
    (line,) = [r for r in caplog.records if "cannot read" in r.getMessage()]
    assert (line.__dict__["lastScanTime"], line.__dict__["transitionTime"]) == (1, 1)


def test_429_beyond_the_concurrency_limit_is_retried_and_the_counts_are_exact(
    estate_sim: Simulator, make_app: MakeApp
) -> None:
    estate_sim.set_latency(0.02)
    estate_sim.set_concurrency_limit(1, endpoint="service_monitor_status")  # the second call in flight: 429
    app = make_app(config(estate_sim, retries=12))
    assert app.run(PATCH_STATUS)
    states, groups, samples = published(app)
    assert (states, groups) == (EXPECTED_STATES, EXPECTED_GROUPS)
    assert estate_sim.count("service_monitor_status") > KEPT, "some calls were answered 429 and asked again"
    assert sample(samples, "ncentral_patch_report_failures_total", report=PATCH_STATUS, reason="rate_limited") == 0


def test_two_in_flight_within_n_centrals_limit_of_three(estate_sim: Simulator, make_app: MakeApp) -> None:
    estate_sim.set_latency(0.02)
    app = make_app(config(estate_sim))
    assert app.run(PATCH_STATUS)
    assert estate_sim.max_in_flight == 2
    assert estate_sim.count("service_monitor_status") == KEPT  # none answered 429


def test_more_than_5_percent_skipped_fails_the_scan_and_keeps_the_last_counts(
    estate_sim: Simulator, make_app: MakeApp
) -> None:
    app = make_app(config(estate_sim))
    assert app.run(PATCH_STATUS)
    estate_sim.set_estate(small_estate(d101=403))  # 2 of 24 devices skipped: over 5 %
    assert not app.run(PATCH_STATUS)
    states, groups, samples = published(app)
    assert (states, groups) == (EXPECTED_STATES, EXPECTED_GROUPS)
    assert sample(samples, "ncentral_patch_report_last_run_success", report=PATCH_STATUS) == 0
    state = app.store.snapshot[PATCH_STATUS]
    assert state.last_reason in ("forbidden", "not_supported")
    assert state.last_error is not None and "2 of 24 devices" in state.last_error
    # Skipped devices are counted by successful scans only: the failed one changed nothing.
    assert sample(samples, "ncentral_patch_status_device_errors_total", reason="not_found") == 1


def test_an_unreadable_answer_is_skipped_as_invalid_response(estate_sim: Simulator, make_app: MakeApp) -> None:
    estate_sim.add_fault("garbage", endpoint="service_monitor_status")
    estate_sim.set_estate(small_estate(d107=None))
    app = make_app(config(estate_sim))
    assert app.run(PATCH_STATUS)
    _, _, samples = published(app)
    assert sample(samples, "ncentral_patch_status_device_errors_total", reason="invalid_response") == 1
    assert sample(samples, "ncentral_patch_status_device_errors_total", reason="not_found") == 0


def test_restart_serves_the_last_good_counts_from_the_state_file(
    estate_sim: Simulator, make_app: MakeApp, tmp_path: Path
) -> None:
    storage = tmp_path / "state.json"
    first = make_app(config(estate_sim), storage=storage)
    assert first.run(PATCH_STATUS)
    first.shutdown()
    before = len(estate_sim.requests)
    restarted = make_app(config(estate_sim), storage=storage)  # no run: what it serves comes from the file
    states, groups, samples = published(restarted)
    assert (states, groups) == (EXPECTED_STATES, EXPECTED_GROUPS)
    assert sample(samples, "ncentral_patch_report_last_run_success", report=PATCH_STATUS) == 1
    assert len(estate_sim.requests) == before
    restarted.shutdown()
    # Another SLA answers another question: the stored counts are not served.
    changed = make_app(config(estate_sim, {"exclude": "^Test ", "sla": "7d"}), storage=storage)
    assert not published(changed)[0]


def test_example_section_is_valid_when_uncommented() -> None:
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    block = example[example.index(f"# {PATCH_STATUS}:"):].split("\n\n")[0].splitlines()
    section = yaml.safe_load("\n".join(line.removeprefix("# ") for line in block))
    settings = settings_of({**BASE, **section})
    assert settings is not None
    assert (settings.interval, settings.sla, settings.scan_stale_after) == (6 * HOUR, 14 * DAY, 7 * DAY)
    assert not settings.wanted("Test Lab") and settings.wanted("Acme Corp")


def test_landing_page_shows_the_lowest_compliance(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim))
    page = landing.render(app.config, app.store.snapshot, {}, "/metrics", 0.0).decode()
    assert "patch compliance</th>" not in page  # no result yet: the scan's outcome only
    assert app.run(PATCH_STATUS)
    page = landing.render(app.config, app.store.snapshot, {}, "/metrics", 0.0).decode()
    section = page[page.index(f'<section class="{PATCH_STATUS}"'):]
    rows = re.findall(r'<tr><td>([^<]*)</td><td class="n">(\d+)</td><td class="n">(\d+)</td><td class="n">(\d+)</td>'
                      r'<td class="n">([^<]*)</td></tr>', section)
    # Alpha: 1 normal of 6 with a patch service, first (lowest); Beta: 11 of 16; Test Gamma: excluded.
    assert rows == [("Alpha &amp; &lt;Co&gt; &quot;AG&quot;", str(ALPHA), "1", "6", "16.7%"),
                    ("Beta GmbH", str(BETA), "11", "16", "68.8%")]
    assert "12 of 22 devices with a patch service are normal" in section


def test_the_customers_table_has_a_compliance_column_when_the_scan_is_on(
    estate_sim: Simulator, make_app: MakeApp,
) -> None:
    """With both scans on, the customer scan's table gains each customer's patch compliance, empty for a
    customer the patch status scan leaves out; rendered again when either result changes."""
    app = make_app(config_document(estate_sim, sections={CUSTOMERS: {}, PATCH_STATUS: {"exclude": "^Test "}}))
    cache = landing.PageCache()

    def customers_rows() -> list[tuple[str, str]]:
        page = cache.page(app.config, app.store.snapshot, {}, "/metrics", False, 0.0).decode()
        section = page[page.index(f'<section class="customers" id="{CUSTOMERS}">'):]
        table = section[:section.index("</table>", section.index("<h3>"))]
        header = re.findall(r"<th>([^<]*)</th>", table)
        rows = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", table)
        return [(name, re.findall(r'<td class="n">([^<]*)</td>', cells)[-1]) for name, cells in rows] \
            if header[-1] == "patch compliance" else []

    assert app.run(CUSTOMERS)
    assert customers_rows() == []  # no patch status result yet: no column
    assert app.run(PATCH_STATUS)
    assert dict(customers_rows()) == {"Alpha &amp; &lt;Co&gt; &quot;AG&quot;": "16.7%", "Beta GmbH": "68.8%",
                                      "Test Gamma": ""}
    # Another patch status result: the table shows it, though the customer scan's result is the same.
    # One of Alpha's failed devices deleted (and the deleted one back, without services): 1 of 5 normal.
    estate_sim.set_estate(small_estate(d102=404, d107=None))
    assert app.run(PATCH_STATUS)
    assert dict(customers_rows())["Alpha &amp; &lt;Co&gt; &quot;AG&quot;"] == "20.0%"
