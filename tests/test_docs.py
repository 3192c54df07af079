"""One truth: what the exporter emits and accepts is what README and config.example.yaml describe."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import yaml
from conftest import MakeApp
from helpers import REPO, metrics_body, parse_samples

from exporter.cli import build_parser
from exporter.config import Config, NCentralSettings
from exporter.config_file import load_config
from exporter.customers import CUSTOMERS, CustomerSettings
from exporter.patch_status import PATCH_STATUS, PatchStatusSettings
from exporter.registry import KINDS
from exporter.reports import ReportSettings
from exporter.simulator import Simulator, demo_estate

README = (REPO / "README.md").read_text(encoding="utf-8")


def emitted_metric_names(sim: Simulator, make_app: MakeApp) -> set[str]:
    config = Config(
        ncentral=NCentralSettings(url=sim.url, token=sim.jwt, retries=0),
        collections=(ReportSettings(name="all", poll_interval=0.01), CustomerSettings(), PatchStatusSettings()),
    )
    # every kind in the registry runs here, so a kind added later is checked too
    assert {collection.kind for collection in config.collections} == {kind.name for kind in KINDS}
    sim.set_estate(demo_estate(customers=3, devices=40))
    app = make_app(config)
    assert app.run("all")
    assert app.run(CUSTOMERS)
    assert app.run(PATCH_STATUS)
    sim.add_fault("403", endpoint="submit")
    assert not app.run("all")  # failure metrics too
    text = metrics_body(app.exposition).decode()
    return {name for name, _ in parse_samples(text)}


def documented(name: str) -> bool:
    if f"`{name}`" in README:
        return True
    return any(name.startswith(prefix) for prefix in re.findall(r"`([a-z]+_)\*`", README))


def test_every_emitted_metric_is_in_the_readme(sim: Simulator, make_app: MakeApp) -> None:
    names = emitted_metric_names(sim, make_app)
    assert {"ncentral_patch_installs", "ncentral_customer_stale_devices",
            "ncentral_customer_patch_status_devices"} <= names
    assert "process_resident_memory_bytes" in names
    missing = sorted(name for name in names if not documented(name))
    assert missing == []


def test_every_flag_is_in_the_readme() -> None:
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9.-]*[a-z0-9]", build_parser().format_help()))
    assert {"--config.file", "--web.listen-address", "--once"} <= flags
    flags.discard("--help")
    assert sorted(flag for flag in flags if f"`{flag}" not in README) == []


def _keys(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return {k for key, value in node.items() for k in {f"{prefix}{key}", *_keys(value, f"{prefix}{key}.")}}
    if isinstance(node, list) and node and isinstance(node[0], dict):
        return _keys(node[0], prefix.rstrip(".") + "[].")
    return set()


def _uncommented(text: str) -> str:
    return "\n".join(re.sub(r"^(\s*)# ?(?=[a-z_]+:)", r"\1", line) for line in text.splitlines())


def test_every_config_key_is_documented_in_the_example_and_readme(tmp_path: Path) -> None:
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    assert load_config(str(REPO / "config.example.yaml"), env={"NCENTRAL_API_TOKEN": "x"})
    keys = _keys(yaml.safe_load(_uncommented(example)))
    expected = {
        "ncentral", "ncentral.url", "ncentral.api_token", "ncentral.api_token_file", "ncentral.verify_tls",
        "ncentral.ca_bundle", "ncentral.request_timeout", "ncentral.max_response_size", "ncentral.retries",
        "ncentral.retry_backoff", "storage", "storage.path", "reports", *(
            f"reports[].{field.name}" for field in fields(ReportSettings) if field.name != "name"
        ), "reports[].name",
    }
    assert expected <= keys, expected - keys
    for key in expected - {"ncentral", "storage", "reports"}:
        assert f"`{key}`" in README, key
    # The patch status section, commented out in the example: each of its keys there and in the README.
    section = example[example.index(f"# {PATCH_STATUS}:"):]
    for field in fields(PatchStatusSettings):
        if field.name != "name":
            assert f"#   {field.name}: " in section, field.name
            assert f"`{PATCH_STATUS}.{field.name}`" in README, field.name


def test_ci_runs_the_readme_test_command() -> None:
    command = ".venv/bin/python -m pytest"
    assert f"\n{command}\n" in README
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().splitlines()[-1] == command
