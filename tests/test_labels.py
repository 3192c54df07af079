from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ExporterProcess, config_document, parse_samples, sample, select, wait_for, write_yaml

from exporter.labels import snake_case
from exporter.simulator import (
    DEFAULT_VERSION,
    PATCH_SERVICE,
    Estate,
    EstateCustomer,
    EstateDevice,
    EstateIssue,
    Simulator,
)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("approvedForInstall", "approved_for_install"),
        ("Approved for Install", "approved_for_install"),
        ("noApproval", "no_approval"),
        ("Installed With Errors", "installed_with_errors"),
        ("securityUpdates", "security_updates"),
        ("definationUpdates", "definition_updates"),  # the vendor's misspelling, corrected
        ("Definition Updates", "definition_updates"),
        ("In Progress", "in_progress"),
        ("  Not   Installed ", "not_installed"),
        ("featurePacks2", "feature_packs2"),
        ("---", "unknown"),
    ],
)
def test_snake_case(name: str, label: str) -> None:
    assert snake_case(name) == label


def test_a_token_in_n_centrals_text_is_scrubbed_before_it_becomes_a_label_or_page(
    sim: Simulator, tmp_path: Path
) -> None:
    """Device classes, an approval status, customer names and server-info's version that quote the JWT or
    the access token: the real command's /metrics and landing page show `<redacted>` in their place."""
    sim.set_data({"deviceClassSummaries": [
        {"deviceClass": f"Laptops {sim.jwt}", "approvalStatusCounts": {"noApproval": 3, sim.jwt: 1}},
    ]})
    sim.set_estate(Estate(
        (EstateCustomer(1000, f"Acme {sim.jwt}"),),
        (EstateDevice(2_000_000, 1000, f"Servers {sim.jwt}", os=f"Windows {sim.jwt}"),
         EstateDevice(2_000_001, 1000, "Servers")),
        (EstateIssue(2_000_000, PATCH_SERVICE),),
    ))
    sim.add_fault("echo_token", endpoint="server_info", count=None)
    config = write_yaml(tmp_path / "config.yaml", {**config_document(sim), "customers": {}})
    exporter = ExporterProcess(tmp_path, "--config.file", str(config))
    try:
        exporter.wait_healthy()
        wait_for(lambda: select(exporter.scrape(), "ncentral_customer_devices"))
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        metrics, page = exporter.get("/metrics").text, exporter.get("/").text
    finally:
        exporter.stop()
    samples = parse_samples(metrics)
    assert sample(samples, "ncentral_server_info", version=DEFAULT_VERSION, api_version="<redacted>") == 1
    assert sample(samples, "ncentral_patch_approvals", report="all", device_class="Laptops <redacted>",
                  approval_status="redacted") == 1
    assert sample(samples, "ncentral_customer_devices", customer_id="1000", customer="Acme <redacted>",
                  device_class="Servers <redacted>") == 1
    assert sample(samples, "ncentral_customer_os_devices", customer_id="1000", customer="Acme <redacted>",
                  os="Windows <redacted>", end_of_life="false") == 1
    assert "Laptops &lt;redacted&gt;" in page and "Acme &lt;redacted&gt;" in page
    for secret in (sim.jwt, *sim.issued_tokens):
        assert secret not in metrics and secret not in page
