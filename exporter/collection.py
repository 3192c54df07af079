"""What every collection's settings and result are, whatever its kind: the protocols the config, the
store and the scheduler rely on. Each kind (see `exporter.registry`) provides classes that fit them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol


class Result(Protocol):
    """A collection's latest good result: immutable, and written to the state file by itself."""

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object of plain values (what `from_json` reads back)."""
        ...


class ResultType(Protocol):
    """What reads a result back from the state file: the result class itself (a classmethod)."""

    def from_json(self, raw: Mapping[str, Any], now: float) -> Result:
        """The result from `to_json`'s object, checked as strictly as N-central's answers (raises
        InvalidResponse, ValueError, TypeError or KeyError otherwise); `now` bounds its timestamps."""
        ...


class Settings(Protocol):
    """One collection's frozen settings, as its kind parsed them from the config file."""

    kind: ClassVar[str]  # the kind's name: in the state file, and the scheduler's worker for the kind
    result_type: ClassVar[ResultType]

    @property
    def name(self) -> str:
        """The collection's name: the key of its state and the `report` label of its run metrics."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between runs."""
        ...

    @property
    def fingerprint(self) -> str:
        """What the collection asks N-central for: a stored result is kept only while this stays the same."""
        ...
