"""The config file: YAML (plus the environment) into a `Config`. The top level is the N-central settings,
the storage and one section per collection kind, each parsed by its kind (see `exporter.registry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from exporter import registry, yaml_text
from exporter.collection import Settings
from exporter.config import MAX_CONFIG_FILE, Config, ConfigError, Notice, mapping, ncentral_settings, string
from exporter.errors import os_reason
from exporter.files import read_regular


def parse_config(data: object, env: Mapping[str, str]) -> Config:
    raw = mapping(data, "", {"ncentral", "storage", *(kind.section for kind in registry.KINDS)}, optional=True)
    if "ncentral" not in raw:
        raise ConfigError("ncentral: required")
    notices: list[Notice] = []
    ncentral = ncentral_settings(raw["ncentral"], env, notices)
    collections: list[Settings] = []
    taken: dict[str, str] = {}  # a collection's name → the config key that named it first
    for kind in registry.KINDS:
        parsed = kind.parse(raw[kind.section], notices) if kind.section in raw else kind.default()
        for index, collection in enumerate(parsed):
            if collection.name in taken:
                raise ConfigError(f"{taken[collection.name]}: {collection.name!r} is the {kind.title}'s name; "
                                  "choose another")
            taken[collection.name] = kind.config_key(parsed, index)
        collections.extend(parsed)
    storage = mapping(raw.get("storage") or {}, "storage", {"path"})
    storage_path = string(storage["path"], "storage.path") if "path" in storage else None
    return Config(ncentral=ncentral, collections=tuple(collections), storage_path=storage_path,
                  notices=tuple(notices))


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate `path`; raises ConfigError with one line naming the file or key."""
    try:
        raw = read_regular(path, MAX_CONFIG_FILE)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = yaml_text.position(raw, exc.start, b"\n")
        raise ConfigError(
            f"{path}: cannot read config file: not UTF-8 at line {line}, column {column} (byte offset {exc.start}): "
            f"{exc.reason} 0x{raw[exc.start]:02x} (save the file as UTF-8)"
        ) from None
    try:
        data = yaml_text.load(text)
    except yaml_text.NotYAML as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(data, os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
