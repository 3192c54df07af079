"""The monitoring mixin (mixin/) is the one source of the shipped alert rules and dashboards: they are its
build with the default _config, another _config reaches every query, and every alert's runbook exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO

from mixin import build

# A metric selector in PromQL: the name and, if present, its label matchers.
SELECTOR = re.compile(r"\b(ncentral_[a-z_]+|up)\b(\s*\{[^}]*\})?")
OTHER = 'job="patches", namespace="monitoring"'
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_shipped_files_are_the_build_of_the_documented_command() -> None:
    result = subprocess.run([sys.executable, "-m", "mixin.build", "--check"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, "run `python -m mixin.build`:\n" + result.stdout + result.stderr
    assert result.stdout == ""
    # Nothing else in the dashboards folder: a dashboard is added in the mixin, not beside it.
    shipped = {f"{build.DASHBOARDS}/{path.name}" for path in (REPO / build.DASHBOARDS).glob("*.json")}
    assert shipped <= set(build.render())
    assert "python -m mixin.build" in README


def test_check_reports_a_hand_edited_file(tmp_path: Path) -> None:
    """--check fails on any difference, and names the file."""
    files = build.render()
    edited = files[build.ALERTS].replace("for: 5m", "for: 6m", 1)
    assert edited != files[build.ALERTS]
    assert build.stale_files({**files, build.ALERTS: edited}, REPO) == [build.ALERTS]
    assert build.stale_files(files, tmp_path) == sorted(files)


def queries(files: dict[str, str]) -> list[tuple[str, str]]:
    """(where, PromQL) of every alert expression and query in an annotation, every dashboard target and
    variable query."""
    found: list[tuple[str, str]] = []
    for group in yaml.safe_load(files[build.ALERTS])["groups"]:
        for rule in group["rules"]:
            found.append((rule["alert"], rule["expr"]))
            for name, text in rule["annotations"].items():
                found += [(f"{rule['alert']} {name}", query) for query in re.findall(r"`([^`]*)`", text)]
    for path, text in files.items():
        if path.endswith(".json"):
            dashboard: dict[str, Any] = json.loads(text)
            for variable in dashboard["templating"]["list"]:
                if variable["type"] == "query":
                    found.append((f"variable {variable['name']}", variable["query"]))
            for panel in dashboard["panels"]:
                found += [(panel["title"], target["expr"]) for target in panel.get("targets", [])]
    return found


def test_another_selector_reaches_every_query(tmp_path: Path) -> None:
    files = build.render({"selector": OTHER})
    found = queries(files)
    assert len(found) > 40
    for where, query in found:
        metrics = SELECTOR.findall(query)
        assert metrics, (where, query)
        for metric, matchers in metrics:
            assert OTHER in matchers, (where, metric, query)
    assert "ncentral-patch-exporter" not in "\n".join(query for _, query in found)
    # And the result is still valid rules.
    rules = tmp_path / "alerts.yml"
    rules.write_text(files[build.ALERTS], encoding="utf-8")
    result = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_and_waits_come_from_the_config() -> None:
    files = build.render({"noApprovalBacklogThreshold": 250, "noApprovalBacklogFor": "12h",
                          "customerBehindThreshold": 0.35})
    rules = {rule["alert"]: rule for group in yaml.safe_load(files[build.ALERTS])["groups"] for rule in group["rules"]}
    backlog = rules["NCentralPatchNoApprovalBacklog"]
    assert backlog["expr"].rstrip().endswith("> 250")
    assert backlog["for"] == "12h"
    assert "for more than 12 hours (threshold 250)" in backlog["annotations"]["description"]
    behind = rules["NCentralPatchCustomerBehind"]
    assert behind["expr"].rstrip().endswith("> 0.35")
    assert "(threshold 35 %)" in behind["annotations"]["description"]
    dashboard = files[f"{build.DASHBOARDS}/ncentral-patch-overview.json"]
    assert '"value": 250' in dashboard
    assert '"value": 0.35' in dashboard


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_runbook_section_in_the_readme() -> None:
    anchors = {github_anchor(line.lstrip("#")) for line in README.splitlines() if line.startswith("#")}
    pattern = yaml.safe_load((REPO / build.ALERTS).read_text(encoding="utf-8"))
    for group in pattern["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            page, _, anchor = url.partition("#")
            assert page.endswith("/README.md"), url
            assert anchor == rule["alert"].lower(), url
            assert anchor in anchors, f"README has no section {rule['alert']}"
