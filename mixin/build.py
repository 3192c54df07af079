"""Builds the shipped alert rules and dashboards from the monitoring mixin (this directory).

`python -m mixin.build` (from the repository root) writes, with the default `_config`:
prometheus/alerts.yml, deploy/kubernetes/prometheusrule.yaml and grafana/dashboards/*.json.
`--check` writes nothing and exits 1 when a shipped file differs from the build.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# go-jsonnet's bindings: the mixin's queries are built with `%`, which go-jsonnet formats natively and the
# C++ implementation in jsonnet code (a build took about 4 s there, 0.7 s here).
import _gojsonnet
import yaml

MIXIN = Path(__file__).resolve().parent
REPO = MIXIN.parent
ALERTS = "prometheus/alerts.yml"
PROMETHEUS_RULE = "deploy/kubernetes/prometheusrule.yaml"
DASHBOARDS = "grafana/dashboards"

# The mixin with `config` merged into its _config.
_SNIPPET = '(import "mixin.libsonnet") + { _config+:: std.parseJson(std.extVar("config")) }'
_RULE_KEYS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
_ANNOTATION_KEYS = ("summary", "description", "runbook_url")

_GENERATED = "Generated from the monitoring mixin (mixin/) by `python -m mixin.build`: do not edit. Change\n" \
    "# mixin/config.libsonnet (thresholds, waits, the job selector) or mixin/alerts.libsonnet, then rebuild.\n"
_ALERTS_HEADER = f"""# Alert rules for ncentral-patch-exporter.
# {_GENERATED}#
# Load them from prometheus.yml (`rule_files: [alerts.yml]`); check them with `promtool check rules
# alerts.yml`; the unit tests next to this file run with `promtool test rules alerts.test.yml
# alerts.hours.test.yml`.
"""
_RULE_HEADER = f"""# The rules of prometheus/alerts.yml for prometheus-operator (kube-prometheus-stack and similar).
# {_GENERATED}#
# Prometheus picks PrometheusRules by label: add the label your installation selects on
# (kube-prometheus-stack: release: <helm release name>). The rules select job="ncentral-patch-exporter" by
# default: the ServiceMonitor's job is the Service name, which is that.
"""


class _Dumper(yaml.SafeDumper):
    """Block style for long and multi-line strings, so PromQL and alert text stay readable; list items
    indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else (">" if len(value) > 80 and " " in value else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True, indent=2)


def _ordered(mapping: Mapping[str, Any], first: Sequence[str]) -> dict[str, Any]:
    """`mapping` with the keys in `first` first, in that order (jsonnet sorts keys by name)."""
    return {key: mapping[key] for key in (*first, *sorted(set(mapping) - set(first))) if key in mapping}


def _ordered_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    ordered = _ordered(rule, _RULE_KEYS)
    if "annotations" in ordered:
        ordered["annotations"] = _ordered(ordered["annotations"], _ANNOTATION_KEYS)
    return ordered


def evaluate(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The mixin's three fields, with `config` overriding the default _config."""
    fields = {}
    for field in ("prometheusAlerts", "prometheusRules", "grafanaDashboards"):
        text = _gojsonnet.evaluate_snippet(
            "build", f"({_SNIPPET}).{field}", jpathdir=[str(MIXIN)], ext_vars={"config": json.dumps(config or {})}
        )
        fields[field] = json.loads(text)
    return fields


def render(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Every generated file's text by its path relative to the repository."""
    mixin = evaluate(config)
    groups = [
        {**group, "rules": [_ordered_rule(rule) for rule in group["rules"]]}
        for group in (*mixin["prometheusRules"].get("groups", []), *mixin["prometheusAlerts"]["groups"])
    ]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ncentral-patch-exporter",
            "labels": {"app.kubernetes.io/name": "ncentral-patch-exporter"},
        },
        "spec": {"groups": groups},
    }
    files = {ALERTS: _ALERTS_HEADER + _yaml({"groups": groups}), PROMETHEUS_RULE: _RULE_HEADER + _yaml(rule)}
    for name, dashboard in mixin["grafanaDashboards"].items():
        files[f"{DASHBOARDS}/{name}"] = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
    return files


def stale_files(files: Mapping[str, str], root: Path) -> list[str]:
    """The paths of `files` whose file below `root` is missing or has other text, sorted."""
    return sorted(
        path for path, text in files.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixin.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a shipped file differs")
    args = parser.parse_args(argv)
    files = render()
    stale = stale_files(files, REPO)
    if not args.check:
        for path in stale:
            (REPO / path).write_text(files[path], encoding="utf-8")
    verb = "differs from the build" if args.check else "written"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
