"""The config file: YAML (plus the environment) into a `Config`. The top level is the N-central settings,
the storage and one section per collection kind, each parsed by its kind (see `exporter.registry`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.reader import ReaderError

from exporter import registry
from exporter.collection import Settings
from exporter.config import MAX_CONFIG_FILE, Config, ConfigError, Located, Notice, mapping, ncentral_settings, string
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


class _Loader(yaml.SafeLoader):
    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> object:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            text = Located(node.value)
            text.line = node.start_mark.line + 1
            return text

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _check_aliases(node)
        return node


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# Values that aliases (`*name`) may add to a config beyond those written out. An anchor shared a few times
# (`<<: *defaults` in each report) adds hundreds; nine levels of nine aliases in 559 bytes would add
# 387 million, and the first message quoting such a value would take gigabytes and minutes to build.
MAX_ALIAS_EXPANSION = 10_000


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it by more than MAX_ALIAS_EXPANSION values (a "billion laughs"
    bomb) or refer to a node from inside itself; the node graph is walked once, each node sized once."""
    sizes: dict[int, int] = {}
    distinct = 0

    def size(node: yaml.Node) -> int:
        nonlocal distinct
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise yaml.composer.ComposerError(None, None, "an alias refers to a node from inside itself",
                                                  node.start_mark)
            return known
        sizes[id(node)] = -1
        distinct += 1
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        sizes[id(node)] = total
        if total - distinct > MAX_ALIAS_EXPANSION:
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) expand the document by more than {MAX_ALIAS_EXPANSION} values",
                node.start_mark,
            )
        return total

    size(root)


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
        line, column = _position(raw, exc.start, b"\n")
        raise ConfigError(
            f"{path}: cannot read config file: not UTF-8 at line {line}, column {column} (byte offset {exc.start}): "
            f"{exc.reason} 0x{raw[exc.start]:02x} (save the file as UTF-8)"
        ) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except ReaderError as exc:
        # A character YAML does not allow (a control character): PyYAML gives its offset, not a mark.
        line, column = _position(text, exc.position, "\n")
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(
            f"{path}: not valid YAML at line {line}, column {column}: character #x{code:04x} is not allowed "
            f"({exc.reason}; write it as an escape like \\x{code:02x} in a double-quoted string, if it is meant)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # PyYAML builds dates and numbers itself: `2025-02-30` raises a plain ValueError.
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_config(data, os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _position(text: str | bytes, offset: int, newline: Any) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text`."""
    line_start = text.rfind(newline, 0, offset) + 1
    return text.count(newline, 0, offset) + 1, offset - line_start + 1
