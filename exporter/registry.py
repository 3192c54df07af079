"""The collection kinds, in the order they are parsed, run, published and shown. To add a kind, add its
module's `KIND` here (see docs/architecture.md, "To add a collection kind")."""

from __future__ import annotations

from typing import Any

from exporter import customers, patch_status, reports
from exporter.collection import Settings
from exporter.kind import Kind

KINDS: tuple[Kind[Any], ...] = (
    reports.KIND,
    customers.KIND,
    patch_status.KIND,
)


def kind_of(collection: Settings) -> Kind[Any]:
    """The kind a collection's settings belong to."""
    return next(kind for kind in KINDS if kind.name == collection.kind)
