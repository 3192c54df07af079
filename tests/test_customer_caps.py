"""The customer scan's bounds (bounded memory): a device list that would publish more series than
`customers.max_series`, or hold more devices than `customers.max_devices`, fails the scan as
`invalid_response` as soon as the page that crosses the bound arrives; the last good counts stay served."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MakeApp
from helpers import scan_settings
from test_customers import config, published

from exporter.app import Exporter
from exporter.config import ConfigError
from exporter.config_file import parse_config
from exporter.customers import CUSTOMERS
from exporter.simulator import Estate, EstateCustomer, EstateDevice, Simulator, demo_estate

PAGE = 100  # the simulator serves 100 devices a page: the demo estate's 1200 devices are 12 pages


@pytest.fixture
def scan(sim: Simulator, make_app: MakeApp) -> tuple[Exporter, list[dict[str, Any]]]:
    sim.set_estate(demo_estate())  # 40 customers, 1200 devices, 5 device classes
    sim.set_page_cap(PAGE)
    documents = [config(sim)]
    return make_app(documents[0], lambda: parse_config(documents[-1], env={})), documents


@pytest.mark.parametrize(("bound", "named"), [
    ({"max_series": 20}, "customers.max_series=20"),
    ({"max_devices": 150}, "customers.max_devices=150"),
])
def test_a_scan_over_its_bound_fails_early_and_keeps_the_last_good_counts(
    sim: Simulator, scan: tuple[Exporter, list[dict[str, Any]]], bound: dict[str, int], named: str
) -> None:
    app, documents = scan
    assert app.run(CUSTOMERS)
    before, _ = published(app)
    assert sum(devices for devices, _ in before.values()) == len(demo_estate().devices)  # the refused customer's too
    pages, issue_calls = sim.count("devices"), sim.count("active_issues")
    documents.append(config(sim, bound))
    assert app.reload() is None
    assert app.run(CUSTOMERS) is False
    state = app.store.snapshot["customers"]
    assert state.last_reason == "invalid_response"
    assert state.last_error is not None and named in state.last_error
    assert published(app)[0] == before  # the last good counts, still served
    # Refused while paging: the first pages crossed the bound; at most a few more were already on their way.
    assert sim.count("devices") - pages <= 2 + 4
    assert sim.count("active_issues") == issue_calls  # no customer asked after a refused device list


def test_the_bound_counts_every_series_of_the_customers_published(
    sim: Simulator, scan: tuple[Exporter, list[dict[str, Any]]]
) -> None:
    """Excluded customers publish nothing, so they do not count against max_series; the customers kept
    count 3 series per device class (devices, patch issue and stale devices) and 1 per operating system."""
    app, documents = scan
    estate = demo_estate()
    (kept,) = (c.customer_id for c in estate.customers if c.name == "Customer 039")
    own = [d for d in estate.devices if d.customer_id == kept]
    series = 3 * len({d.device_class for d in own}) + len({d.os for d in own})
    documents.append(config(sim, {"max_series": series, "include": "^Customer 039$"}))
    assert app.reload() is None
    assert app.run(CUSTOMERS)
    _, samples = published(app)
    customer_series = [key for key in samples if key[0].startswith("ncentral_customer_") and key[0] != (
        "ncentral_customer_scan_errors_total")]
    assert len(customer_series) == series
    assert {dict(labels)["customer"] for _, labels in customer_series} == {"Customer 039"}

    documents.append(config(sim, {"max_series": series - 1, "include": "^Customer 039$"}))
    assert app.reload() is None
    assert app.run(CUSTOMERS) is False
    assert app.store.snapshot[CUSTOMERS].last_reason == "invalid_response"


@pytest.mark.parametrize("value", [0, -1, "many", True, 10**8])
def test_the_bounds_are_checked(sim: Simulator, value: object) -> None:
    for key in ("max_series", "max_devices"):
        with pytest.raises(ConfigError, match=rf"^customers\.{key}: must be a whole number from 1 to 10000000"):
            parse_config(config(sim, {key: value}), env={})


def test_the_bounds_default_to_what_an_msp_needs(sim: Simulator) -> None:
    settings = scan_settings(parse_config(config(sim), env={}))
    assert (settings.max_series, settings.max_devices) == (20_000, 500_000)


def test_the_bound_counts_each_customer_under_its_final_name(sim: Simulator, make_app: MakeApp) -> None:
    """A customer listed as an excluded name on every device but the last, which names it otherwise, is
    published under that last name with all its device classes: they all count against max_series."""
    devices = [EstateDevice(2_000_000 + index, 1000, f"Class {index:04d}", customer_name="Test Co")
               for index in range(1999)]
    devices.append(EstateDevice(2_001_999, 1000, "Class 1999"))
    sim.set_estate(Estate((EstateCustomer(1000, "Real Co"),), tuple(devices)))
    app = make_app(config(sim, {"exclude": "^Test", "max_series": 100}))
    assert app.run(CUSTOMERS) is False
    state = app.store.snapshot["customers"]
    assert state.last_reason == "invalid_response"
    assert state.last_error is not None and "customers.max_series=100" in state.last_error
    assert published(app)[0] == {}
