"""What the simulated N-central reports: its release, the patch report's data, and which reports it accepts.

The report data defaults to the vendor page's example; `validate_submit` checks a submit body against
`PatchComparisonReportRequest` as the OpenAPI description defines it.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.report import INSTALL_STATUSES, PATCH_APPROVALS, PATCH_CATEGORIES

DEMO_JWT = "demo-jwt-eyJhbGciOiJIUzI1NiJ9.ZGVtbw.c2lnbmF0dXJl"
FIRST_REPORT_ID = 575523
# The N-central release the simulator claims (server-info/extra) and its API service's version (server-info).
DEFAULT_VERSION = "2025.4.0.12"
API_SERVICE_VERSION = "3.1.0"
# `PatchComparisonReportRequest.startDate` as the OpenAPI description constrains it.
START_DATE_PATTERN = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3})?Z)?$"
)

# The vendor page's example numbers, one more device class, and an install breakdown: what a report without
# filters counts over the last 90 days (a report's filters narrow them, see `filters`).
DEFAULT_DATA: dict[str, Any] = {
    "deviceClassSummaries": [
        {
            "deviceClass": "Laptops - Windows",
            "approvalStatusCounts": {
                "declined": 2004, "notApproved": 7, "approvedForRemoval": 7, "noApproval": 150,
                "approvedForInstall": 6424,
            },
        },
        {
            "deviceClass": "Workstations - Windows",
            "approvalStatusCounts": {
                "declined": 414, "notApproved": 12, "approvedForRemoval": 1, "noApproval": 53,
                "approvedForInstall": 2975,
            },
        },
        {
            "deviceClass": "Servers - Windows",
            "approvalStatusCounts": {"declined": 96, "noApproval": 31, "approvedForInstall": 1210},
        },
    ],
    "patchSummaryList": [
        {
            "approvalStatus": "Approved for Install",
            "patchInstallStatusCounts": [
                {
                    "patchInstallStatus": "Installed",
                    "patchTypeSummaries": [
                        {"patchType": "securityUpdates", "count": 5120},
                        {"patchType": "criticalUpdates", "count": 1830},
                        {"patchType": "definationUpdates", "count": 2950},
                    ],
                },
                {
                    "patchInstallStatus": "Failed",
                    "patchTypeSummaries": [
                        {"patchType": "securityUpdates", "count": 23},
                        {"patchType": "criticalUpdates", "count": 4},
                    ],
                },
                {
                    "patchInstallStatus": "Installed With Errors",
                    "patchTypeSummaries": [{"patchType": "securityUpdates", "count": 6}],
                },
                {
                    "patchInstallStatus": "Aborted",
                    "patchTypeSummaries": [{"patchType": "definationUpdates", "count": 2}],
                },
                {
                    "patchInstallStatus": "Not Installed",
                    "patchTypeSummaries": [{"patchType": "securityUpdates", "count": 412}],
                },
            ],
        },
        {
            "approvalStatus": "No Approval",
            "patchInstallStatusCounts": [
                {
                    "patchInstallStatus": "Not Installed",
                    "patchTypeSummaries": [
                        {"patchType": "securityUpdates", "count": 71},
                        {"patchType": "criticalUpdates", "count": 27},
                        {"patchType": "definationUpdates", "count": 45},
                    ],
                },
            ],
        },
    ],
}

OUTCOMES = ("COMPLETED", "FAILED", "ABORTED", "IN_PROGRESS")
# The `message` of a report in each status.
REPORT_MESSAGES = {
    "IN_PROGRESS": "Patch comparison report is being generated in the background.",
    "COMPLETED": "Patch comparison report generated successfully.",
    "FAILED": "Patch comparison report generation failed.",
    "ABORTED": "Patch comparison report generation was aborted.",
}


def release_has_patch_reports(version: str) -> bool:
    """Whether an N-central of this release has the patch reports API (2025.4 and later)."""
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (2025, 4)
    except (IndexError, ValueError):
        return True


def validate_submit(body: Any) -> list[tuple[str, str]]:
    """The field errors of a submit body, checked against `PatchComparisonReportRequest`.

    Reading: the schema does not say whether unknown properties are refused; the simulator refuses them
    (a field the schema lacks, like customerId, would be ignored or refused by a real server: never send it)."""
    if not isinstance(body, dict):
        return [("body", "request body must be a JSON object")]
    errors: list[tuple[str, str]] = []
    start = body.get("startDate")
    if start is None:
        errors.append(("startDate", "startDate is required"))
    elif not isinstance(start, str) or not START_DATE_PATTERN.match(start):
        errors.append(("startDate", "startDate must be in the format YYYY-MM-DD"))
    names = {"installStatuses": "Install Status", "patchApprovals": "Patch Approval",
             "patchCategories": "Patch Category"}
    for key, allowed in (
        ("installStatuses", INSTALL_STATUSES), ("patchApprovals", PATCH_APPROVALS),
        ("patchCategories", PATCH_CATEGORIES),
    ):
        if key in body:
            values = body[key]
            if not isinstance(values, list):
                errors.append((key, f"{key} must be an array of strings"))
            elif bad := [value for value in values if value not in allowed]:
                errors.append((key, f"Invalid {names[key]} Values {bad}"))
    for key in sorted(set(body) - {"startDate", *names}):
        errors.append((key, f"{key} is not a property of PatchComparisonReportRequest"))
    return errors
