"""YAML text into plain data, bounded: PyYAML's safe loader, refusing nesting beyond MAX_DEPTH and aliases
that expand the document beyond MAX_ALIAS_EXPANSION values or MAX_ALIAS_CHARACTERS characters before
either can cost seconds or gigabytes.
Both config files (the exporter's and the web config) are read through it."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.reader import ReaderError

from exporter.config import Located


class NotYAML(ValueError):
    """The text is not YAML this exporter reads: one line, starting "not valid YAML", with the position."""


def load(text: str) -> Any:
    """The document in `text` as plain data (a timestamp PyYAML cannot build stays a string, `Located` on
    its line); raises NotYAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except ReaderError as exc:
        # A character YAML does not allow (a control character): PyYAML gives its offset, not a mark.
        line, column = position(text, exc.position, "\n")
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise NotYAML(
            f"not valid YAML at line {line}, column {column}: character #x{code:04x} is not allowed "
            f"({exc.reason}; write it as an escape like \\x{code:02x} in a double-quoted string, if it is meant)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
        raise NotYAML(f"not valid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # PyYAML builds dates and numbers itself: `2025-02-30` raises a plain ValueError.
        raise NotYAML(f"not valid YAML: {exc}") from None


def position(text: str | bytes, offset: int, newline: Any) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text`."""
    line_start = text.rfind(newline, 0, offset) + 1
    return text.count(newline, 0, offset) + 1, offset - line_start + 1


class _Loader(yaml.SafeLoader):
    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> object:  # type: ignore[override]
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            text = Located(node.value)
            text.line = node.start_mark.line + 1
            return text

    def fetch_more_tokens(self) -> None:
        """Refuse nesting beyond MAX_DEPTH as it is scanned: PyYAML composes a document recursively, so a
        megabyte of `[` would take seconds to end in a RecursionError."""
        super().fetch_more_tokens()
        if self.flow_level > MAX_DEPTH or len(self.indents) > MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                            self.get_mark())

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _check_aliases(node)
        return node


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# Levels of nesting a config may have (collections in collections); the deepest this exporter reads is 4.
MAX_DEPTH = 64

# What aliases (`*name`) may add to a config beyond what is written out: values, and characters of text. An
# anchor shared a few times (`<<: *defaults` in each report) adds hundreds of values and a few thousand
# characters; nine levels of nine aliases in 559 bytes would add 387 million values, and one 100 KB string
# aliased a thousand times 100 MB of text: every check or message that walked either would take gigabytes
# and minutes.
MAX_ALIAS_EXPANSION = 10_000
MAX_ALIAS_CHARACTERS = 100_000


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it by more than MAX_ALIAS_EXPANSION values or
    MAX_ALIAS_CHARACTERS characters (a "billion laughs" bomb), or refer to a node from inside itself; the
    node graph is walked once, each node sized once."""
    sizes: dict[int, tuple[int, int]] = {}
    written_values = written_characters = 0  # what the document holds without expanding an alias

    def size(node: yaml.Node) -> tuple[int, int]:
        nonlocal written_values, written_characters
        known = sizes.get(id(node))
        if known is not None:
            if known[0] < 0:
                raise yaml.composer.ComposerError(None, None, "an alias refers to a node from inside itself",
                                                  node.start_mark)
            return known
        sizes[id(node)] = (-1, 0)
        written_values += 1
        values, characters = 1, 0
        if isinstance(node, yaml.ScalarNode):
            characters = len(node.value)
            written_characters += characters
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                child for pair in node.value for child in pair)
            for child in children:
                child_values, child_characters = size(child)
                values += child_values
                characters += child_characters
        sizes[id(node)] = (values, characters)
        if values - written_values > MAX_ALIAS_EXPANSION:
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) expand the document by more than {MAX_ALIAS_EXPANSION} values",
                node.start_mark,
            )
        if characters - written_characters > MAX_ALIAS_CHARACTERS:
            raise yaml.composer.ComposerError(
                None, None,
                f"aliases (*name) expand the document by more than {MAX_ALIAS_CHARACTERS} characters of text",
                node.start_mark,
            )
        return values, characters

    size(root)
