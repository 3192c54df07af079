"""Servers under test, one per process: `python -m benchmarks.serve KIND [--series N]`.

KIND is
  ours       the real Exporter + WebServer, its store holding one report of N series (with --web-config, TLS
             or basic auth as that file says);
  stock      prometheus_client's own start_http_server with a registry of the same collectors (the
             exporter's CollectionCollector over a store with the same data, its ExporterCollector,
             RuntimeCollector and ScheduleCollector, and the default process, platform and gc
             collectors): the stock way to serve the same series;
  simulator  the N-central simulator, reports COMPLETED after --generation-time seconds with data of N series
             (or the data in --data-file).

Prints `PORT n` once listening on 127.0.0.1, then serves until its stdin closes. The simulator also takes
commands on stdin, one a line, and answers each with one line: `generation_time SECONDS`, `finish`
(complete every report in flight), `count ENDPOINT` (requests received).
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.common import HOST, SIMULATOR_JWT, fill_store, vendor_data


def _config(url: str) -> object:
    from exporter.config import Config, NCentralSettings
    from exporter.reports import ReportSettings

    return Config(
        ncentral=NCentralSettings(url=url, token="bench-token-not-used"),  # noqa: S106 - never sent anywhere
        collections=(ReportSettings(name="all"),),
    )


def serve_ours(series: int, web_config: str | None = None, max_connections: int | None = None) -> int:
    from exporter.app import Exporter
    from exporter.config import Config
    from exporter.web import MAX_CONNECTIONS, WebServer
    from exporter.webconfig import WebConfig, load_web_config

    config = _config("http://127.0.0.1:9")
    assert isinstance(config, Config)
    app = Exporter(config)
    fill_store(app.store, series)
    server = WebServer(app, (HOST, 0), "/metrics", load_web_config(web_config) if web_config else WebConfig(),
                       web_config_file=web_config, max_connections=max_connections or MAX_CONNECTIONS)
    server.start()
    return server.address[1]


def serve_stock(series: int) -> int:
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
        start_http_server,
    )

    from exporter.collector import CollectionCollector, ExporterCollector, RuntimeCollector, ScheduleCollector
    from exporter.config import Config
    from exporter.store import Store

    config = _config("http://127.0.0.1:9")
    assert isinstance(config, Config)
    store = Store(config.collections)
    fill_store(store, series)
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ExporterCollector())
    registry.register(CollectionCollector(store, lambda: config.collections))
    registry.register(RuntimeCollector(lambda: None, lambda: store.write_failures))
    registry.register(ScheduleCollector(lambda: config.collections))
    server, _thread = start_http_server(0, addr=HOST, registry=registry)
    return int(server.server_address[1])


def serve_simulator(
    series: int, generation_time: float, data_file: str | None = None, estate: tuple[int, int, float] | None = None,
    bare_devices: bool = False,
) -> None:
    import dataclasses

    from exporter.simulator import Simulator, demo_estate

    simulator = Simulator(jwt=SIMULATOR_JWT, generation_time=generation_time)
    if data_file:
        with open(data_file, encoding="utf-8") as handle:
            simulator.set_data(json.load(handle))
    else:
        simulator.set_data(vendor_data(series))
    if estate is not None:
        customers, devices, latency = estate
        demo = demo_estate(customers=customers, devices=devices)
        if bare_devices:  # no operating system, every agent checked in ten minutes ago
            demo = dataclasses.replace(demo, devices=tuple(
                dataclasses.replace(device, os=None, checkin=600.0) for device in demo.devices
            ))
        simulator.set_estate(demo)
        simulator.set_latency(latency)
    simulator.start()
    print(f"PORT {simulator.port}", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "generation_time":
            simulator.set_generation_time(float(argument))
            print("ok", flush=True)
        elif command == "finish":
            simulator.finish_reports()
            print("ok", flush=True)
        elif command == "count":
            print(simulator.count(argument), flush=True)
        elif command == "max_in_flight":
            print(simulator.max_in_flight, flush=True)
            simulator.reset_max_in_flight()
        else:
            print(f"unknown command {command!r}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("ours", "stock", "simulator"))
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--generation-time", type=float, default=0.0)
    parser.add_argument("--data-file", help="simulator: the reports' `data` from this JSON file instead")
    parser.add_argument("--customers", type=int, help="simulator: a customer estate of this many customers ...")
    parser.add_argument("--devices", type=int, default=10_000, help="... with this many devices ...")
    parser.add_argument("--latency", type=float, default=0.0, help="... answering each call after this many s")
    parser.add_argument("--bare-devices", action="store_true",
                        help="... whose devices report no operating system and all checked in recently")
    parser.add_argument("--web-config", help="ours: serve with this --web.config.file (TLS, basic auth)")
    parser.add_argument("--max-connections", type=int, help="ours: --web.max-connections")
    args = parser.parse_args()
    if args.kind == "simulator":
        estate = (args.customers, args.devices, args.latency) if args.customers else None
        serve_simulator(args.series, args.generation_time, args.data_file, estate, args.bare_devices)
        return
    port = serve_ours(args.series, args.web_config, args.max_connections) if args.kind == "ours" \
        else serve_stock(args.series)
    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)


if __name__ == "__main__":
    main()
