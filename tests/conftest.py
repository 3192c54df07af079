from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.simulator import Simulator

TEST_JWT = "test-jwt-eyJhbGciOiJIUzI1NiJ9.dGVzdA.c2VjcmV0LXNpZ25hdHVyZQ"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(jwt=TEST_JWT).start()
    try:
        yield simulator
    finally:
        simulator.stop()
