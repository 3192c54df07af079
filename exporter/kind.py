"""What a collection kind is: the one class a kind's module fills in, and the registry lists.

A kind is everything about one sort of collection: its config section (parsed into frozen settings, one
or more collections), its run (a `CollectionRun`), its result (which writes itself to the state file and
reads itself back; see `exporter.collection`), its metric families and its landing-page section. The
store, the collector, the landing page, the scheduler, `--once` and `--check-config` ask the kinds in
`exporter.registry`; none of them names one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client.core import Metric

from exporter.collection import Settings
from exporter.config import Notice
from exporter.live_client import CollectionRun
from exporter.store import CollectionState

S = TypeVar("S", bound=Settings)
R = TypeVar("R")

# Renders a landing-page part once per result: `memo(result, render)` is `render()`, kept for as long as
# the page keeps showing that same (immutable) result object; `result` may be a tuple of results, when
# the part shows more than one.
Memo = Callable[[object, Callable[[], str]], str]


@dataclass(frozen=True, eq=False)
class CustomerColumn:
    """A per-customer figure one kind lends to the landing-page customer tables of the others."""

    header: str  # plain text
    cells: Mapping[int, str]  # customer id -> the cell's text (plain text; a customer left out gets none)
    source: object  # the result the cells come from: a table showing them is memoised on it too


class Kind(Generic[S]):
    """One kind of collection. A kind's module subclasses this once, sets the class attributes, fills in
    `parse`, and overrides what else it has (each default is "nothing of that")."""

    settings_type: type[S]  # frozen; its `kind` class attribute is the kind's name
    run_type: type[CollectionRun]
    section: str  # the config file's top-level key the kind parses
    title: str  # how messages name it ("customer scan")

    @property
    def name(self) -> str:
        """The kind's name: in the state file (a stored result is read only by its own kind) and the name of
        the scheduler's worker the kind's collections run on (one at a time, beside other kinds')."""
        return self.settings_type.kind

    def parse(self, value: object, notices: list[Notice]) -> tuple[S, ...]:
        """The collections the kind's config section asks for (raises ConfigError, one line naming the key);
        `notices` gets what to say once the whole config is accepted."""
        raise NotImplementedError

    def default(self) -> tuple[S, ...]:
        """The collections when the config file has no section for the kind: none, unless overridden."""
        return ()

    def demo(self, interval: float) -> tuple[S, ...]:
        """The collections `--demo` runs, every `interval` seconds."""
        return ()

    def config_key(self, collections: Sequence[S], index: int) -> str:
        """The config key naming `collections[index]`, for an error about its name."""
        return self.section

    def summary(self, collections: Sequence[S]) -> str | None:
        """What `--check-config` says of the kind's collections; None to say nothing."""
        return None

    def of(self, collections: Sequence[Settings]) -> list[S]:
        """The collections of this kind among `collections`, in order."""
        return [collection for collection in collections if isinstance(collection, self.settings_type)]

    def result(self, state: CollectionState | None, result_type: type[R]) -> R | None:
        """The state's result if it is of `result_type` (the kind's own), else None."""
        result = state.result if state is not None else None
        return result if isinstance(result, result_type) else None

    # --- output ---

    def families(self, states: Sequence[tuple[str, CollectionState]]) -> list[Metric]:
        """The kind's metric families from its collections' states (by name), as stored. The run outcomes
        (`ncentral_patch_report_*`) are every kind's and made by the collector, not here."""
        return []

    def expired(self, settings: S, state: CollectionState, now: float) -> bool:
        """Whether the result is too old to publish (its metrics are left out; the run outcomes stay)."""
        return False

    def waiting(self, settings: S, state: CollectionState | None) -> bool:
        """Whether the exporter is not ready while this collection has no result (`/-/ready`)."""
        return False

    def customer_column(self, states: Sequence[tuple[S, CollectionState | None]]) -> CustomerColumn | None:
        """A per-customer figure of this kind's result, for the customer tables of other kinds' sections;
        None for none."""
        return None

    def landing(
        self, collections: Sequence[tuple[S, CollectionState | None, dt.datetime | None]], now: float, memo: Memo,
        columns: Sequence[CustomerColumn] = (),
    ) -> str:
        """The kind's landing-page section (HTML, every value escaped) from (settings, state, next run) per
        collection; "" for none. The costly part of a result goes through `memo`. A table of customers
        adds `columns`, the per-customer figures of the other kinds."""
        return ""
