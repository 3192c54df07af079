"""The customer scan: its config section, and end-to-end runs against the simulator over real HTTP (exact
counts per customer and device class, paging, refused customers, include/exclude, 429, faults, the state
file), its metrics, the landing page's customers table and `--demo --once`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_JWT, MakeApp
from helpers import (
    REPO,
    Samples,
    config_document,
    parse_samples,
    reports_of,
    run_command,
    sample,
    scan_settings,
    scrape,
    select,
    write_yaml,
)

from exporter import landing
from exporter.app import Exporter
from exporter.config import ConfigError, log_notices
from exporter.config_file import parse_config
from exporter.customers import (
    CUSTOMERS,
    CustomerCount,
    CustomerData,
    CustomerSettings,
    OsCount,
    customers_table,
)
from exporter.devices import checkin_time, parse_device
from exporter.simulator import (
    LEGACY_PATCH_SERVICE,
    PATCH_SERVICE,
    Estate,
    EstateCustomer,
    EstateDevice,
    EstateIssue,
    Simulator,
    demo_estate,
)

WS, LAPTOP, SERVER = "Workstations - Windows", "Laptops - Windows", "Servers - Windows"
ALPHA, BETA, GAMMA, DENIED, UMLAUT = 11, 12, 13, 14, 15

# A small estate whose every count is known by hand.
CUSTOMERS_ = (
    EstateCustomer(ALPHA, 'Alpha & <Co> "AG"'),
    EstateCustomer(BETA, "Beta GmbH"),
    EstateCustomer(GAMMA, "Test Gamma"),
    EstateCustomer(DENIED, "Denied Ltd", refused=403),
    EstateCustomer(UMLAUT, "Ümlaut 東京"),
)
DEVICES = (
    EstateDevice(101, ALPHA, WS), EstateDevice(102, ALPHA, WS), EstateDevice(103, ALPHA, WS),
    EstateDevice(104, ALPHA, SERVER), EstateDevice(105, ALPHA, SERVER),
    EstateDevice(201, BETA, LAPTOP), EstateDevice(202, BETA, LAPTOP), EstateDevice(203, BETA, WS),
    EstateDevice(301, GAMMA, WS),
    EstateDevice(401, DENIED, WS), EstateDevice(402, DENIED, WS),
    EstateDevice(501, UMLAUT, SERVER),
)
ISSUES = (
    EstateIssue(101, PATCH_SERVICE), EstateIssue(101, LEGACY_PATCH_SERVICE),  # two patch issues: counted once
    EstateIssue(102, "Disk Space"),  # not a patch service
    EstateIssue(104, "patch status v2", notification_state=1),  # names match case-insensitively
    EstateIssue(201, PATCH_SERVICE),
    EstateIssue(203, "Windows UAC Status"),
    EstateIssue(301, PATCH_SERVICE),
    EstateIssue(401, PATCH_SERVICE),
)
# (customer_id, customer, device_class) → (devices, devices with a patch problem); Denied's active issues
# answer 403: its devices are counted, its patch problems never read (no made-up 0).
EXPECTED: dict[tuple[int, str, str], tuple[float, float | None]] = {
    (ALPHA, 'Alpha & <Co> "AG"', SERVER): (2, 1),
    (ALPHA, 'Alpha & <Co> "AG"', WS): (3, 1),
    (BETA, "Beta GmbH", LAPTOP): (2, 1),
    (BETA, "Beta GmbH", WS): (1, 0),
    (GAMMA, "Test Gamma", WS): (1, 1),
    (DENIED, "Denied Ltd", WS): (2, None),
    (UMLAUT, "Ümlaut 東京", SERVER): (1, 0),
}


def small_estate(**refused: int | None) -> Estate:
    """The estate above; `refused` maps a customer's name in lower case ("denied") to a refusal status."""
    customers = tuple(
        EstateCustomer(c.customer_id, c.name, refused.get(c.name.split()[0].lower(), c.refused))
        for c in CUSTOMERS_
    )
    return Estate(customers, DEVICES, ISSUES)


@pytest.fixture
def estate_sim(sim: Simulator) -> Simulator:
    sim.set_estate(small_estate())
    sim.set_page_cap(2)  # 12 devices → 6 pages; Alpha's 4 issues → 2 pages
    return sim


def config(sim: Simulator, customers: dict[str, Any] | None = None, **ncentral: Any) -> dict[str, Any]:
    """The shared test config with this `customers` section (all defaults when None)."""
    return config_document(sim, sections={CUSTOMERS: customers or {}}, ncentral=ncentral)


def published(app: Exporter) -> tuple[dict[tuple[int, str, str], tuple[float, float | None]], Samples]:
    """(customer_id, customer, device_class) → (devices, devices with a patch problem or None)."""
    samples = scrape(app)
    devices = select(samples, "ncentral_customer_devices")
    issues = select(samples, "ncentral_customer_patch_issue_devices")
    assert set(select(samples, "ncentral_customer_stale_devices")) == set(devices), "a stale twin for each"
    assert set(issues) <= set(devices)
    counts = {}
    for labels, value in devices.items():
        tags = dict(labels)
        counts[(int(tags["customer_id"]), tags["customer"], tags["device_class"])] = (value, issues.get(labels))
    return counts, samples


# --- config ------------------------------------------------------------------------------------------


def test_section_absent_means_off_and_empty_means_defaults() -> None:
    base: dict[str, Any] = {"ncentral": {"url": "https://n.example", "api_token": "x"}}
    assert parse_config(base, env={}).collection(CUSTOMERS) is None
    settings = scan_settings(parse_config({**base, CUSTOMERS: None}, env={}))
    assert settings.interval == 3600.0
    assert settings.patch_services == ("Patch Status v2", "Patch Status")
    assert settings.include is None and settings.exclude is None
    assert settings.is_patch_service("  PATCH status V2 ")
    assert not settings.is_patch_service("Patch Status v3")
    # Without the section a report may be named "customers".
    assert reports_of(parse_config({**base, "reports": [{"name": CUSTOMERS}]}, env={}))[0].name == CUSTOMERS


def test_include_and_exclude_search_the_name() -> None:
    settings = scan_settings(parse_config({
        "ncentral": {"url": "https://n.example", "api_token": "x"},
        CUSTOMERS: {"interval": "2h", "patch_services": ["My Patch"], "include": "GmbH|AG", "exclude": "^Test "},
    }, env={}))
    assert settings.interval == 7200.0
    assert settings.wanted("Beta GmbH") and settings.wanted("Alpha AG")
    assert not settings.wanted("Test Gamma AG")
    assert not settings.wanted("Other Ltd")


@pytest.mark.parametrize(("section", "expected"), [
    ({"interval": "soon"}, "customers.interval: invalid duration"),
    ({"include": "(unclosed"}, "customers.include: invalid regular expression"),
    ({"exclude": 5}, "customers.exclude: must be a regular expression"),
    ({"patch_services": []}, "customers.patch_services: must be a non-empty list"),
    ({"patch_services": "Patch Status"}, "customers.patch_services: must be a non-empty list"),
    ({"colour": "red"}, "customers.colour: unknown key"),
])
def test_bad_section_is_one_clear_line(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"ncentral": {"url": "https://n.example", "api_token": "x"}, CUSTOMERS: section}, env={})
    assert expected in str(error.value)


def test_report_named_customers_is_refused_with_exit_2(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "config.yml", {
        "ncentral": {"url": "https://n.example", "api_token": "x"},
        "reports": [{"name": "all"}, {"name": CUSTOMERS}],
        CUSTOMERS: {"interval": "1m"},
    })
    result = run_command("--config.file", str(path), "--check-config")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "reports[1].name: 'customers' is the customer scan's name" in line
    assert "Traceback" not in result.stderr


def test_interval_below_15m_warns(caplog: pytest.LogCaptureFixture) -> None:
    base: dict[str, Any] = {"ncentral": {"url": "https://n.example", "api_token": "x"}}
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        log_notices(parse_config({**base, CUSTOMERS: {"interval": "15m"}}, env={}))
        assert not caplog.records
        config = parse_config({**base, CUSTOMERS: {"interval": "5m"}}, env={})
        assert not caplog.records  # said only once the config is accepted (see test_config_errors.py)
        log_notices(config)
    assert "customers.interval is below 15m" in caplog.text


# --- end to end against the simulator -------------------------------------------------------------------


def test_exact_counts_paging_and_refused_customer(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim))
    assert app.run(CUSTOMERS)
    counts, samples = published(app)
    assert counts == EXPECTED  # Denied (403, never read): its devices, no patch count
    assert sample(samples, "ncentral_customer_scan_errors_total", reason="forbidden") == 1
    assert sample(samples, "ncentral_customer_scan_errors_total", reason="not_supported") == 0
    assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 1
    assert sample(samples, "ncentral_patch_report_runs_total", report=CUSTOMERS) == 1
    # Paging: 12 devices at 2 a page; per customer one page, Alpha's 4 issues two; always asking 1000.
    assert estate_sim.count("devices") == 6
    assert estate_sim.count("active_issues") == 6
    calls = [r for r in estate_sim.requests if r.endpoint in ("devices", "active_issues")]
    assert all("pageSize=1000" in r.path for r in calls)
    assert {r.path for r in calls if r.endpoint == "devices"} == {
        f"/api/devices?pageNumber={n}&pageSize=1000" for n in range(1, 7)
    }
    assert estate_sim.max_in_flight <= 2


def test_refused_customer_keeps_its_last_good_counts(estate_sim: Simulator, make_app: MakeApp) -> None:
    estate_sim.set_estate(small_estate(denied=None))
    app = make_app(config(estate_sim))
    assert app.run(CUSTOMERS)
    counts, _ = published(app)
    assert counts[(DENIED, "Denied Ltd", WS)] == (2, 1)

    # Now 403, then 404: the customer keeps 1 device with a patch problem; the run is still a success.
    for status, reason in ((403, "forbidden"), (404, "not_supported")):
        estate_sim.set_estate(small_estate(denied=status))
        assert app.run(CUSTOMERS)
        counts, samples = published(app)
        assert counts[(DENIED, "Denied Ltd", WS)] == (2, 1)
        assert {key: value for key, value in counts.items() if key[0] != DENIED} == {
            key: value for key, value in EXPECTED.items() if key[0] != DENIED}
        assert sample(samples, "ncentral_customer_scan_errors_total", reason=reason) == 1
        assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 1


def test_refused_customer_is_logged_once_per_run(
    estate_sim: Simulator, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(config(estate_sim))
    with caplog.at_level(logging.WARNING, logger="exporter.customers"):
        assert app.run(CUSTOMERS)
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].__dict__["customer"] == "Denied Ltd"
    assert refused[0].__dict__["customer_id"] == DENIED


def test_include_and_exclude_scope_calls_and_series(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim, {"include": "^(Alpha|Beta|Test)", "exclude": "^Test "}))
    assert app.run(CUSTOMERS)
    counts, _ = published(app)
    assert counts == {key: value for key, value in EXPECTED.items() if key[0] in (ALPHA, BETA)}
    # Active issues only of the customers kept: Alpha (two pages) and Beta.
    assert sorted(r.path.split("?")[0] for r in estate_sim.requests if r.endpoint == "active_issues") == [
        f"/api/org-units/{ALPHA}/active-issues", f"/api/org-units/{ALPHA}/active-issues",
        f"/api/org-units/{BETA}/active-issues",
    ]


def test_429_is_retried_and_the_counts_are_exact(estate_sim: Simulator, make_app: MakeApp) -> None:
    estate_sim.add_fault("429", endpoint="active_issues", count=3)
    estate_sim.add_fault("429", endpoint="devices", count=1, retry_after="0")
    app = make_app(config(estate_sim))
    assert app.run(CUSTOMERS)
    counts, samples = published(app)
    assert counts == EXPECTED
    assert estate_sim.count("active_issues") == 6 + 3
    assert estate_sim.count("devices") == 6 + 1
    assert sample(samples, "ncentral_patch_report_failures_total", report=CUSTOMERS, reason="rate_limited") == 0


def test_at_most_two_calls_in_flight_within_the_concurrency_limit(estate_sim: Simulator, make_app: MakeApp) -> None:
    estate_sim.set_latency(0.05)
    estate_sim.set_concurrency_limit(2)
    app = make_app(config(estate_sim))
    assert app.run(CUSTOMERS)
    assert estate_sim.max_in_flight == 2  # both slots used, never a third
    assert estate_sim.count("active_issues") == 6  # no 429 answered, none retried
    assert published(app)[0] == EXPECTED


def test_a_failed_scan_keeps_the_last_good_data_and_recovers(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim, retries=1))
    assert app.run(CUSTOMERS)
    estate_sim.add_fault("500", endpoint="active_issues", count=None)
    estate_sim.set_estate(Estate(CUSTOMERS_, DEVICES, ()))  # what would be published if the run went through
    assert not app.run(CUSTOMERS)
    counts, samples = published(app)
    assert counts == EXPECTED
    assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 0
    assert sample(samples, "ncentral_patch_report_failures_total", report=CUSTOMERS, reason="http") == 1
    state = app.store.snapshot[CUSTOMERS]
    assert state.last_error is not None and "HTTP 500" in state.last_error
    for token in [*estate_sim.issued_tokens, estate_sim.jwt]:
        assert token not in state.last_error

    estate_sim.clear_faults()
    assert app.run(CUSTOMERS)
    counts, samples = published(app)
    # No issues any more; Denied's were never read.
    assert counts == {key: (devices, None if issues is None else 0) for key, (devices, issues) in EXPECTED.items()}
    assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 1


def test_invalid_device_list_fails_the_run_as_invalid_response(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim))
    estate_sim.add_fault("garbage", endpoint="devices")
    assert not app.run(CUSTOMERS)
    samples = scrape(app)
    assert sample(samples, "ncentral_patch_report_failures_total", report=CUSTOMERS, reason="invalid_response") == 1
    assert not select(samples, "ncentral_customer_devices")


def test_state_file_round_trip(estate_sim: Simulator, make_app: MakeApp, tmp_path: Path) -> None:
    storage = tmp_path / "state.json"
    first = make_app(config(estate_sim), storage=storage)
    assert first.run(CUSTOMERS)
    first.shutdown()
    before = len(estate_sim.requests)

    restarted = make_app(config(estate_sim), storage=storage)  # no run: what it serves comes from the file
    counts, samples = published(restarted)
    assert counts == EXPECTED
    assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 1
    assert len(estate_sim.requests) == before
    # A refused customer in the next run still keeps the counts the file brought back.
    estate_sim.set_estate(small_estate(alpha=403))
    assert restarted.run(CUSTOMERS)
    assert published(restarted)[0] == EXPECTED
    restarted.shutdown()  # releases the state file for the next exporter

    # A changed scope starts afresh: the stored counts answered another question.
    rescoped = make_app(config(estate_sim, {"exclude": "Beta"}), storage=storage)
    assert not select(scrape(rescoped), "ncentral_customer_devices")


def test_reload_adds_and_removes_the_scan(estate_sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    document = config(estate_sim)
    del document[CUSTOMERS]
    path = write_yaml(tmp_path / "config.yml", document)
    from exporter.config_file import load_config

    app = make_app(load_config(str(path), env={}), lambda: load_config(str(path), env={}))
    assert CUSTOMERS not in app.store.snapshot
    write_yaml(path, config(estate_sim))
    assert app.reload() is None
    assert app.run_once()
    assert published(app)[0] == EXPECTED
    write_yaml(path, document)
    assert app.reload() is None
    samples = scrape(app)
    assert not select(samples, "ncentral_customer_devices")
    assert not select(samples, "ncentral_patch_report_runs_total", report=CUSTOMERS)


# --- the landing page and the demo ----------------------------------------------------------------------


def test_landing_page_lists_the_20_worst_customers_escaped(sim: Simulator, make_app: MakeApp) -> None:
    estate = demo_estate()
    worst = EstateCustomer(1, "<script>alert(1)</script> & Co")
    sim.set_estate(Estate(
        (*estate.customers, worst), (*estate.devices, EstateDevice(1, 1, WS)),
        (*estate.issues, EstateIssue(1, PATCH_SERVICE)),
    ))
    app = make_app(config(sim))
    assert app.run(CUSTOMERS)
    state = app.store.snapshot[CUSTOMERS].result
    assert isinstance(state, CustomerData)
    page = landing.render(app.config, app.store.snapshot, {}, "/metrics", 0.0).decode()
    section = page[page.index('<section class="customers"'):]
    rows = re.findall(r'<tr><td>(.*?)</td><td class="n">(\d+)</td><td class="n">(\d+)</td>'
                      r'<td class="n">(\d+)</td><td class="n">[\d.]+%</td><td class="n">(\d+)</td>'
                      r'<td class="n">(\d+)</td></tr>', section)
    assert len(rows) == 20
    totals = {row.customer_id: row for row in state.per_customer()}
    shares = sorted((row.patch_issue_devices / row.devices for row in totals.values()
                     if row.patch_issue_devices is not None), reverse=True)
    assert [int(issues) / int(devices) for _, _, devices, issues, _, _ in rows] == shares[:20]
    # The stale and end-of-life columns are each customer's sums.
    assert [(int(stale), int(eol)) for _, cid, _, _, stale, eol in rows] == [
        (totals[int(cid)].stale_devices, totals[int(cid)].end_of_life_devices) for _, cid, *_ in rows]
    assert sum(int(eol) for *_, eol in rows) > 0 and sum(int(stale) for *_, stale, _ in rows) > 0
    # The worst (1 of 1 device) comes first, escaped.
    assert rows[0][:2] == ("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co", "1")
    assert "<script>" not in page
    worst_table = section[:section.index("refused in the last scan")]
    assert "Restricted Holdings" not in worst_table  # its active issues never read: it comes last


def test_demo_once_prints_the_customer_and_patch_status_metrics() -> None:
    result = run_command("--demo", "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    samples = parse_samples(result.stdout)
    estate = demo_estate()
    devices = select(samples, "ncentral_customer_devices")
    assert sum(devices.values()) == len(estate.devices)  # the refused customer's too
    assert sum(select(samples, "ncentral_customer_stale_devices").values()) > 0
    assert sum(select(samples, "ncentral_customer_os_devices", end_of_life="true").values()) > 0
    assert sample(samples, "ncentral_customer_scan_errors_total", reason="forbidden") == 1
    assert sample(samples, "ncentral_patch_report_last_run_success", report=CUSTOMERS) == 1
    names = {dict(labels)["customer"] for labels in devices}
    assert {"Müller & Söhne GmbH", "東京テクノロジー株式会社", 'Smith "Quotes" & <Sons>'} <= names
    # The patch status scan, on the named demo customers: every state, and devices past the SLA.
    states = select(samples, "ncentral_customer_patch_status_devices")
    assert {dict(labels)["state"] for labels in states} >= {
        "normal", "warning", "failed", "misconfigured", "no_data", "stale", "disconnected", "not_monitored",
    }
    assert sum(select(samples, "ncentral_customer_patch_sla_breached_devices").values()) > 0
    assert sample(samples, "ncentral_patch_report_last_run_success", report="patch_status") == 1


def test_customer_metrics_and_config_keys_are_documented() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    for name in ("ncentral_customer_devices", "ncentral_customer_patch_issue_devices",
                 "ncentral_customer_stale_devices", "ncentral_customer_os_devices",
                 "ncentral_customer_scan_errors_total"):
        assert f"`{name}`" in readme, name
    # every setting is a key of the section, but for the collection's name (always "customers")
    keys = [field.name for field in dataclasses.fields(CustomerSettings) if field.name != "name"]
    assert {"interval", "stale_after", "end_of_life_os", "max_series"} <= set(keys)
    for key in keys:
        assert f"`customers.{key}`" in readme, key
        assert re.search(rf"^\s*#?\s*{key}:", example, re.MULTILINE), key
    assert re.search(r"^#?\s*customers:", example, re.MULTILINE)


def test_example_customers_section_is_valid_when_uncommented() -> None:
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    block = example[example.index("# customers:"):].split("\n\n")[0].splitlines()
    section = yaml.safe_load("\n".join(line.removeprefix("# ") for line in block))
    settings = scan_settings(parse_config({"ncentral": {"url": "https://n.example", "api_token": "x"}, **section},
                                          env={}))
    assert settings.interval == 3600.0
    assert settings.patch_services == ("Patch Status v2", "Patch Status")
    assert not settings.wanted("Test Lab") and settings.wanted("Acme Corp")


def test_simulator_answers_429_beyond_its_concurrency_limit(sim: Simulator) -> None:
    """The simulator's limit is real: two calls at once against a limit of one, one is refused."""
    import threading

    import requests

    token = requests.post(f"{sim.url}/api/auth/authenticate", headers={"Authorization": f"Bearer {sim.jwt}"},
                          timeout=5).json()["tokens"]["access"]["token"]
    sim.set_concurrency_limit(1)
    sim.set_latency(0.5)
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def call() -> None:
        barrier.wait()
        statuses.append(requests.get(f"{sim.url}/api/devices?pageSize=1000", timeout=10,
                                     headers={"Authorization": f"Bearer {token}"}).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(statuses) == [200, 429]
    assert sim.max_in_flight == 1


def test_device_list_refused_fails_the_run_as_forbidden(estate_sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(config(estate_sim))
    estate_sim.add_fault("403", endpoint="devices")
    assert not app.run(CUSTOMERS)
    state = app.store.snapshot[CUSTOMERS]
    assert state.last_reason == "forbidden"
    assert state.last_error is not None and "GET /api/devices: HTTP 403" in state.last_error
    assert "patch reports" not in state.last_error


# --- stale agents and end-of-life operating systems ---------------------------------------------------------

T0 = dt.datetime(2027, 1, 11, 23, 58, tzinfo=dt.UTC).timestamp()  # two minutes before Server 2016's end
STALE, REFUSED, EXCLUDED = 21, 22, 23
WIN11, WIN10 = "Microsoft Windows 11 Pro", "Microsoft Windows 10 Pro"
LTSC21, LTSB16 = "Microsoft Windows 10 Enterprise LTSC 2021", "Microsoft Windows 10 Enterprise 2016 LTSB"
S2016, S2012R2, S2022 = ("Microsoft Windows Server 2016 Standard", "Microsoft Windows Server 2012 R2 Standard",
                         "Microsoft Windows Server 2022 Standard")
WEEK = 7 * 86400.0
LIVES = Estate(
    (EstateCustomer(STALE, "Stale Co"), EstateCustomer(REFUSED, "Refused Ltd", refused=403),
     EstateCustomer(EXCLUDED, "Test Excluded")),
    (
        EstateDevice(601, STALE, WS, WIN11, 600.0),
        EstateDevice(602, STALE, WS, WIN10, None),  # never checked in: stale
        EstateDevice(603, STALE, WS, LTSC21, -60.0),  # a minute ahead of the clock: not stale
        EstateDevice(604, STALE, WS, LTSB16, "last Tuesday"),  # unreadable: stale
        EstateDevice(605, STALE, WS, None, WEEK),  # silent exactly stale_after: not stale
        EstateDevice(606, STALE, WS, "", WEEK + 1),  # silent longer: stale
        EstateDevice(610, STALE, WS, WIN11, "2027-13-01T00:00:00Z"),  # no 13th month: unreadable, stale
        EstateDevice(607, STALE, SERVER, S2016, "2027-01-11T23:00:00"),  # no offset: UTC, 58 minutes ago
        EstateDevice(608, STALE, SERVER, S2012R2, "2026-12-01T10:00:00.123456+01:00"),  # stale
        EstateDevice(609, STALE, SERVER, S2022, "2027-01-11T22:00:00.5-02:00"),  # 30 s ahead: not stale
        EstateDevice(701, REFUSED, WS, "Microsoft Windows 7 Professional", None),
        EstateDevice(702, REFUSED, WS, WIN11, 600.0),
        EstateDevice(801, EXCLUDED, WS, WIN10, "garbage"),  # excluded: neither counted nor logged
    ),
)


def test_stale_and_end_of_life_counts_end_to_end(caplog: pytest.LogCaptureFixture, make_app: MakeApp) -> None:
    """Exact counts from the simulator over HTTP; the clock (of both) then passes midnight, the day
    Windows Server 2016 and Windows 10 LTSC 2021 reach their end of support."""
    now = [T0]
    with Simulator(jwt=TEST_JWT, wall=lambda: now[0]) as simulator:
        simulator.set_estate(LIVES)
        simulator.set_page_cap(4)
        app = make_app(config(simulator, {"exclude": "^Test "}), wall=lambda: now[0])
        try:
            with caplog.at_level(logging.WARNING, logger="exporter.customers"):
                assert app.run(CUSTOMERS)
            counts, samples = published(app)
            stale = {(int(dict(k)["customer_id"]), dict(k)["device_class"]): v
                     for k, v in select(samples, "ncentral_customer_stale_devices").items()}
            assert stale == {(STALE, WS): 4, (STALE, SERVER): 1, (REFUSED, WS): 1}
            assert counts[(STALE, "Stale Co", WS)] == (7, 0)
            assert counts[(REFUSED, "Refused Ltd", WS)] == (2, None)  # devices, no patch count yet
            (line,) = [r for r in caplog.records if "check-in" in r.getMessage()]
            assert line.__dict__["devices"] == 2 and line.__dict__["example"] == "'last Tuesday'"

            systems = os_counts(samples)
            assert systems == {
                (STALE, WIN11, "false"): 2, (STALE, WIN10, "true"): 1, (STALE, LTSC21, "false"): 1,
                (STALE, LTSB16, "true"): 1, (STALE, "unknown", "false"): 2, (STALE, S2016, "false"): 1,
                (STALE, S2012R2, "true"): 1, (STALE, S2022, "false"): 1,
                (REFUSED, "Microsoft Windows 7 Professional", "true"): 1, (REFUSED, WIN11, "false"): 1,
            }
            assert app.run(CUSTOMERS)
            assert os_counts(published(app)[1]) == systems  # the same day, the same answer

            now[0] = T0 + 180  # 00:01 on 2027-01-12
            assert app.run(CUSTOMERS)
            after = os_counts(published(app)[1])
            assert after == {**{key: value for key, value in systems.items() if key[1] not in (S2016, LTSC21)},
                             (STALE, S2016, "true"): 1, (STALE, LTSC21, "true"): 1}
        finally:
            app.shutdown()


def os_counts(samples: Samples) -> dict[tuple[int, str, str], float]:
    return {
        (int(dict(labels)["customer_id"]), dict(labels)["os"], dict(labels)["end_of_life"]): value
        for labels, value in select(samples, "ncentral_customer_os_devices").items()
    }


@pytest.mark.parametrize(("text", "expected"), [
    ("2017-02-16T21:00:00+01:00", "2017-02-16T20:00:00"),  # the OpenAPI description's example
    ("2017-02-16T20:00:00Z", "2017-02-16T20:00:00"),
    ("2017-02-16t20:00:00z", "2017-02-16T20:00:00"),
    ("2017-02-16 20:00:00Z", "2017-02-16T20:00:00"),
    ("2017-02-16T20:00:00", "2017-02-16T20:00:00"),  # no offset: UTC
    ("2017-02-16T20:00:00.250Z", "2017-02-16T20:00:00.250000"),
    ("2017-02-16T20:00:00.123456789-05:30", "2017-02-17T01:30:00.123457"),
    ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00"),  # a leap second
])
def test_checkin_times_in_rfc_3339(text: str, expected: str) -> None:
    stamp = checkin_time(text)
    assert stamp is not None
    assert dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None).isoformat() == expected


@pytest.mark.parametrize("value", [
    "", "last Tuesday", "2017-02-16", "2017-02-16T20:00Z", "2017-02-30T20:00:00Z", "2017-02-16T24:00:00Z",
    "2017-02-16T20:00:00+0100", "2017-02-16T20:00:00+24:00", "20170216T200000Z", "2017-W07-4T20:00:00Z",
    "٢٠١٧-02-16T20:00:00Z", 1487275200, True, [], {},
])
def test_unreadable_checkin_times(value: object) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        checkin_time(value)
    device = parse_device({"deviceId": 1, "customerId": 2, "lastApplianceCheckinTime": value}, "test")
    assert device is not None and device.last_checkin is None and device.unreadable_checkin is not None


def test_a_device_that_never_checked_in_has_no_time() -> None:
    for raw in ({"deviceId": 1, "customerId": 2}, {"deviceId": 1, "customerId": 2, "lastApplianceCheckinTime": None}):
        device = parse_device(raw, "test")
        assert device is not None and device.last_checkin is None and device.unreadable_checkin is None
        assert device.os == "unknown"


def test_landing_table_shows_a_customer_never_read_last_without_a_made_up_share() -> None:
    data = CustomerData(
        (CustomerCount(1, "Read Co", WS, 4, 0, 1), CustomerCount(2, "Refused Co", WS, 3, None, 2),
         CustomerCount(3, "Worse Co", WS, 2, 1, 0)),
        systems=(OsCount(2, "Refused Co", "Microsoft Windows 7 Professional", True, 2),
                 OsCount(2, "Refused Co", "Microsoft Windows 11 Pro", False, 1)),
    )
    rows = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", customers_table(data))
    assert [name for name, _ in rows] == ["Worse Co", "Read Co", "Refused Co"]
    cells = re.findall(r'<td class="n">([^<]*)</td>', rows[2][1])
    assert cells == ["2", "3", "not read", "", "2", "2"]  # id, devices, patch problem, share, stale, end-of-life
