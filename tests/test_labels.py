from __future__ import annotations

import pytest

from exporter.labels import snake_case


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
