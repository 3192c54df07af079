"""How the simulated N-central answers a report's filters: its counts (the `data` set on the simulator)
stand for every patch of the last 90 days, and a submit's filters narrow them in a plausible, deterministic
way.

- `patchApprovals`: only the chosen approval statuses are counted; the others are 0 (and their
  `patchSummaryList` entries are left out).
- `patchCategories`: each device class's patches spread over the categories by `CATEGORY_SHARES`; a
  report counts the chosen categories' share. Patch types in `patchSummaryList` belong to one category
  each and are kept or left out whole.
- `installStatuses`: patches approved for install spread over the install statuses by `INSTALL_SHARES`,
  patches approved for removal are installed, all others not installed; a report counts the chosen
  statuses' share. `patchSummaryList` keeps the chosen install statuses.
- `startDate`: a window shorter than 90 days counts that fraction of the 90 days' patches; 90 days or
  more counts them all (the estate has no older patches).

Without filters and with a start date 90 or more days back the data is answered unchanged, whatever its
shape (tests set malformed data on purpose). A count is scaled only where it is an integer.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from exporter.labels import snake_case

WINDOW_DAYS = 90
# Of all patches, the share in each category (they add up to 1).
CATEGORY_SHARES = {
    "Security Updates": 0.30, "Critical Updates": 0.12, "Definition Updates": 0.20, "Updates": 0.12,
    "Update Rollups": 0.06, "Drivers": 0.05, "Third Party": 0.05, "Applications": 0.04, "Feature Packs": 0.02,
    "Upgrades": 0.02, "Service Packs": 0.01, "Tools": 0.01,
}
# Of the patches approved for install, the share in each install status (they add up to 1).
INSTALL_SHARES = {
    "Installed": 0.80, "Not Installed": 0.14, "In Progress": 0.02, "Failed": 0.02, "Installed With Errors": 0.01,
    "Aborted": 0.01,
}
# The install status of every patch of the other approval statuses.
_SETTLED_INSTALL = {"approved_for_removal": "Installed"}
_NOT_INSTALLED = "Not Installed"


def _chosen(body: Mapping[str, Any], key: str) -> set[str] | None:
    """The snake_case names a filter keeps, or None (all) when the submit leaves it out."""
    values = body.get(key)
    return None if values is None else {snake_case(str(value)) for value in values}


def window_share(start_date: str, today: dt.date) -> float:
    """The share of the 90 days' patches since `start_date` (`YYYY-MM-DD`, maybe with a time)."""
    days = (today - dt.date.fromisoformat(start_date[:10])).days
    return min(max(days, 0), WINDOW_DAYS) / WINDOW_DAYS


def _scaled(count: object, share: float) -> object:
    if share == 1.0 or isinstance(count, bool) or not isinstance(count, int):
        return count
    return int(count * share + 0.5)


def _install_share(approval: str, installs: set[str] | None) -> float:
    if installs is None:
        return 1.0
    if approval == "approved_for_install":
        return sum(share for status, share in INSTALL_SHARES.items() if snake_case(status) in installs)
    return 1.0 if snake_case(_SETTLED_INSTALL.get(approval, _NOT_INSTALLED)) in installs else 0.0


def filtered(data: dict[str, Any], body: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
    """A copy of `data` as a report with the submit `body`'s filters and start date counts it."""
    approvals, installs = _chosen(body, "patchApprovals"), _chosen(body, "installStatuses")
    categories = _chosen(body, "patchCategories")
    window = window_share(str(body["startDate"]), today)
    result = copy.deepcopy(data)
    if approvals is None and installs is None and categories is None and window == 1.0:
        return result
    category_share = 1.0 if categories is None else sum(
        share for category, share in CATEGORY_SHARES.items() if snake_case(category) in categories
    )
    for summary in _objects(result.get("deviceClassSummaries")):
        counts = summary.get("approvalStatusCounts")
        if isinstance(counts, dict):
            for key, count in counts.items():
                approval = snake_case(str(key))
                chosen = approvals is None or approval in approvals
                share = category_share * _install_share(approval, installs) * window if chosen else 0.0
                counts[key] = _scaled(count, share)
    if isinstance(result.get("patchSummaryList"), list):
        result["patchSummaryList"] = _summaries(result["patchSummaryList"], approvals, installs, categories, window)
    return result


def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _summaries(
    summaries: list[Any], approvals: set[str] | None, installs: set[str] | None, categories: set[str] | None,
    window: float,
) -> list[Any]:
    """`patchSummaryList` with only the chosen approval statuses, install statuses and patch types, counted
    over the window; an entry left empty is left out."""
    kept: list[Any] = []
    for summary in summaries:
        if not isinstance(summary, dict) or not isinstance(summary.get("patchInstallStatusCounts"), list):
            kept.append(summary)  # a shape N-central would not send: answered as it is
            continue
        if approvals is not None and snake_case(str(summary.get("approvalStatus"))) not in approvals:
            continue
        statuses = []
        for status in summary["patchInstallStatusCounts"]:
            if isinstance(status, dict):
                if installs is not None and snake_case(str(status.get("patchInstallStatus"))) not in installs:
                    continue
                listed = status.get("patchTypeSummaries")
                types = [
                    {**item, "count": _scaled(item.get("count"), window)} if isinstance(item, dict) else item
                    for item in (listed if isinstance(listed, list) else [])
                    if categories is None or not isinstance(item, dict)
                    or snake_case(str(item.get("patchType"))) in categories
                ]
                if not types:
                    continue
                status = {**status, "patchTypeSummaries": types}
            statuses.append(status)
        if statuses:
            kept.append({**summary, "patchInstallStatusCounts": statuses})
    return kept
