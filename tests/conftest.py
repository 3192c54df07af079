from __future__ import annotations

import compileall
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from exporter.app import ConfigLoader, Exporter
from exporter.config import Config
from exporter.config_file import parse_config
from exporter.simulator import Simulator

TEST_JWT = "test-jwt-eyJhbGciOiJIUzI1NiJ9.dGVzdA.c2VjcmV0LXNpZ25hdHVyZQ"


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package's bytecode once, before the workers start. The suite starts the exporter as a
    subprocess many times; where PYTHONDONTWRITEBYTECODE is set (as on the CI image) each start would
    otherwise compile every module again (0.5 of the 1.05 s a `--demo --check-config` took here)."""
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(__file__).resolve().parent.parent / "exporter", quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked `long` first: xdist hands out whole modules in this order, so none of them starts
    late and ends the run alone (the order within each group stays as collected)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(jwt=TEST_JWT).start()
    try:
        yield simulator
    finally:
        simulator.stop()


MakeApp = Callable[..., Exporter]


@pytest.fixture
def make_app() -> Iterator[MakeApp]:
    """The one way tests make an exporter: `make_app(config, load_config=None, storage=None, **clocks)`
    from a Config, or from a config document (as the YAML file would read) with `storage` as its state
    file's path; other keywords go to Exporter (its clocks, its client factory). Each is shut down after the
    test (shutting down is idempotent: a test may end one itself, to restart on its state file)."""
    apps: list[Exporter] = []

    def make(config: Config | Mapping[str, Any], load_config: ConfigLoader | None = None, *,
             storage: Path | None = None, **options: Any) -> Exporter:
        if not isinstance(config, Config):
            document = {**config, **({"storage": {"path": str(storage)}} if storage is not None else {})}
            config = parse_config(document, env={})
        app = Exporter(config, load_config, **options)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.shutdown()
