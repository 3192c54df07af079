"""End-of-life operating systems: the default list's dates and order, `customers.end_of_life_os` in the
config (a user's list replaces the default), and config.example.yaml carrying the same list."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from helpers import REPO, scan_settings, write_yaml

from exporter.config import ConfigError
from exporter.config_file import load_config, parse_config
from exporter.lifecycle import DEFAULT_END_OF_LIFE_OS, is_end_of_life

BASE: dict[str, Any] = {"ncentral": {"url": "https://n.example", "api_token": "x"}}

# supportedOs as N-central names it → the last day it was still supported (its end date the day after).
LAST_SUPPORTED = {
    "Microsoft Windows XP Professional": "2014-04-07",
    "Microsoft Windows Vista Business": "2017-04-10",
    "Microsoft Windows 7 Professional": "2020-01-13",
    "Microsoft Windows 8 Pro": "2016-01-11",
    "Microsoft Windows 8.1 Pro": "2023-01-09",
    "Microsoft Windows 10 Pro": "2025-10-13",
    "Microsoft Windows 10 Enterprise": "2025-10-13",
    "Microsoft Windows 10 Enterprise 2015 LTSB": "2025-10-13",
    "Microsoft Windows 10 Enterprise 2016 LTSB": "2026-10-12",
    "Microsoft Windows 10 Enterprise LTSC 2019": "2029-01-08",
    "Microsoft Windows 10 Enterprise LTSC 2021": "2027-01-11",
    "Microsoft Windows 10 IoT Enterprise LTSC 2021": "2032-01-12",
    "Microsoft Windows Server 2003 R2 Standard Edition": "2015-07-13",
    "Microsoft Windows Server 2008 Standard": "2020-01-13",
    "Microsoft Windows Server 2008 R2 Standard": "2020-01-13",
    "Microsoft Windows Server 2012 Datacenter": "2023-10-09",
    "Microsoft Windows Server 2012 R2 Standard": "2023-10-09",
    "Microsoft Windows Server 2016 Standard": "2027-01-11",
}


@pytest.mark.parametrize(("os_name", "last"), LAST_SUPPORTED.items())
def test_default_list_has_the_vendors_dates(os_name: str, last: str) -> None:
    day = dt.date.fromisoformat(last)
    assert not is_end_of_life(DEFAULT_END_OF_LIFE_OS, os_name, day)
    assert is_end_of_life(DEFAULT_END_OF_LIFE_OS, os_name, day + dt.timedelta(days=1))
    assert is_end_of_life(DEFAULT_END_OF_LIFE_OS, os_name.upper(), day + dt.timedelta(days=1))  # any case


@pytest.mark.parametrize("os_name", [
    "Microsoft Windows 11 Pro", "Microsoft Windows Server 2019 Standard", "Microsoft Windows Server 2022 Datacenter",
    "macOS 15 Sequoia", "Ubuntu 22.04 LTS", "unknown",
])
def test_supported_systems_are_not_end_of_life(os_name: str) -> None:
    assert not is_end_of_life(DEFAULT_END_OF_LIFE_OS, os_name, dt.date(2027, 6, 1))


def test_a_users_list_replaces_the_default() -> None:
    settings = scan_settings(parse_config({**BASE, "customers": {"end_of_life_os": [
        {"match": "windows 10", "since": dt.date(2027, 1, 12), "except": "ltsc"},
        {"match": "Ubuntu 20\\.04", "since": "2025-05-31"},
    ]}}, env={}))
    assert settings is not None and len(settings.end_of_life_os) == 2
    rules, day = settings.end_of_life_os, dt.date(2027, 1, 12)
    assert is_end_of_life(rules, "Microsoft Windows 10 Pro", day)
    assert not is_end_of_life(rules, "Microsoft Windows 10 Pro", day - dt.timedelta(days=1))
    assert not is_end_of_life(rules, "Microsoft Windows 10 Enterprise LTSC 2021", day)  # except, any case
    assert is_end_of_life(rules, "Microsoft Windows 10 Enterprise 2016 LTSB", day)
    assert not is_end_of_life(rules, "Microsoft Windows Server 2012 R2 Standard", day)  # not in this list
    assert is_end_of_life(rules, "Ubuntu 20.04.6 LTS", day)
    empty = scan_settings(parse_config({**BASE, "customers": {"end_of_life_os": []}}, env={}))
    assert empty is not None and empty.end_of_life_os == ()
    default = scan_settings(parse_config({**BASE, "customers": {}}, env={}))
    assert default is not None and default.end_of_life_os == DEFAULT_END_OF_LIFE_OS
    assert default.stale_after == 7 * 86400


def test_the_settings_are_part_of_what_a_stored_result_answers() -> None:
    def fingerprint(section: dict[str, Any]) -> str:
        settings = scan_settings(parse_config({**BASE, "customers": section}, env={}))
        assert settings is not None
        return settings.fingerprint

    default = fingerprint({})
    assert fingerprint({"stale_after": "7d"}) == default
    assert fingerprint({"stale_after": "3d"}) != default
    assert fingerprint({"end_of_life_os": []}) != default


@pytest.mark.parametrize(("section", "expected"), [
    ({"stale_after": "soon"}, "customers.stale_after: invalid duration"),
    ({"stale_after": 0}, "customers.stale_after: duration must be greater than zero"),
    ({"end_of_life_os": "Windows 7"}, "customers.end_of_life_os: must be a list"),
    ({"end_of_life_os": [{"since": "2020-01-14"}]}, "customers.end_of_life_os[0].match: missing"),
    ({"end_of_life_os": [{"match": "Windows 7"}]}, "customers.end_of_life_os[0].since: missing"),
    ({"end_of_life_os": [{"match": "(", "since": "2020-01-14"}]},
     "customers.end_of_life_os[0].match: invalid regular expression"),
    ({"end_of_life_os": [{"match": "7", "since": "2020-01-14", "except": "["}]},
     "customers.end_of_life_os[0].except: invalid regular expression"),
    ({"end_of_life_os": [{"match": "7", "since": "14.01.2020"}]},
     "customers.end_of_life_os[0].since: must be a date (YYYY-MM-DD)"),
    ({"end_of_life_os": [{"match": "7", "since": "2020-01-14", "until": "x"}]},
     "customers.end_of_life_os[0].until: unknown key"),
    ({"end_of_life_os": ["Windows 7"]}, "customers.end_of_life_os[0]: must be a mapping"),
])
def test_bad_settings_are_one_clear_line(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, "customers": section}, env={})
    assert expected in str(error.value)


def test_a_yaml_date_and_an_impossible_one(tmp_path: Any) -> None:
    path = tmp_path / "config.yml"
    path.write_text("ncentral: {url: 'https://n.example', api_token: x}\n"
                    "customers:\n  end_of_life_os:\n    - {match: Windows 7, since: 2020-01-14}\n", encoding="utf-8")
    settings = scan_settings(load_config(str(path), env={}))
    assert settings is not None and settings.end_of_life_os[0].since == dt.date(2020, 1, 14)
    write_yaml(path, {**BASE, "customers": {"end_of_life_os": [{"match": "7", "since": "2020-02-30"}]}})
    with pytest.raises(ConfigError, match=r"end_of_life_os\[0\]\.since: must be a date"):
        load_config(str(path), env={})


def test_the_example_config_carries_the_default_list_with_its_sources() -> None:
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    block = example[example.index("#   end_of_life_os:"):].splitlines()
    lines = [line for line in block if line.startswith("#     - ") or line.startswith("#   end_of_life_os:")]
    entries = yaml.safe_load("\n".join(line.removeprefix("#   ") for line in lines))["end_of_life_os"]
    rules = scan_settings(parse_config({**BASE, "customers": {"end_of_life_os": entries}}, env={}))
    assert rules is not None and rules.end_of_life_os == DEFAULT_END_OF_LIFE_OS
    sources = [line for line in block if line.startswith("#     - ")]
    assert all("# windows-" in line for line in sources if "except" not in line)
