"""Command line: flags in the Go exporters' style, wiring, signals."""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING

from exporter import __version__, logs

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.webconfig import WebConfig

log = logging.getLogger("exporter")

DEMO_INTERVAL = 60.0
# What the Go exporters (promlog) accept besides our own names.
_LEVEL_SYNONYMS = {"warn": "warning"}
_FORMAT_SYNONYMS = {"logfmt": "text"}


def _synonym(synonyms: dict[str, str]) -> Callable[[str], str]:
    def canonical(value: str) -> str:
        return synonyms.get(value.strip().lower(), value.strip().lower())

    return canonical


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncentral-patch-exporter",
        description="Prometheus exporter for N-able N-central patch-comparison reports.",
    )
    parser.add_argument("--config.file", dest="config_file", default="config.yaml", metavar="PATH",
                        help="YAML configuration file (default: %(default)s)")
    parser.add_argument("--web.listen-address", dest="listen_address", default=":10120", metavar="[HOST]:PORT",
                        help="address to serve metrics on (default: %(default)s)")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                        help="path of the metrics (default: %(default)s)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                        help="exporter-toolkit web configuration: TLS and basic auth")
    parser.add_argument("--web.max-requests", dest="max_requests", type=int, default=40, metavar="N",
                        help="most requests handled at once, beyond which 503; 0 for no limit (default: %(default)s)")
    parser.add_argument("--web.max-connections", dest="max_connections", type=int, default=1000, metavar="N",
                        help="most connections open at once, lowered to fit the open-file limit (default: %(default)s)")
    parser.add_argument("--storage.path", dest="storage_path", metavar="PATH",
                        help="state file keeping the last results across restarts (overrides storage.path)")
    parser.add_argument("--log.level", dest="log_level", default="info", choices=logs.LEVELS,
                        type=_synonym(_LEVEL_SYNONYMS), help="(warn is taken for warning)")
    parser.add_argument("--log.format", dest="log_format", default="text", choices=logs.FORMATS,
                        type=_synonym(_FORMAT_SYNONYMS), help="text is logfmt (logfmt is taken for text)")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration, the web flags and the storage path, then exit (2 if wrong)")
    parser.add_argument("--check-connection", action="store_true",
                        help="check, step by step, that N-central answers and accepts the token; exit 0 or 1")
    parser.add_argument("--once", action="store_true",
                        help="run every collection once (each report, and each scan that is configured), "
                        "print their metrics to stdout, exit 0 if every one succeeded")
    parser.add_argument("--demo", action="store_true",
                        help="run against a built-in N-central simulator on loopback")
    parser.add_argument("--version", action="version", version=f"ncentral-patch-exporter {__version__}")
    return parser


def demo_config(url: str, token: str) -> Config:
    """Every kind's demo collections, against the simulator at `url`."""
    from exporter.config import Config, NCentralSettings
    from exporter.registry import KINDS

    return Config(
        ncentral=NCentralSettings(url=url, token=token, request_timeout=10.0, retry_backoff=0.5),
        collections=tuple(collection for kind in KINDS for collection in kind.demo(DEMO_INTERVAL)),
    )


_STOP, _RELOAD, _DONE = "stop", "reload", "done"
# Signals as the platform has them. Windows has no SIGHUP (a reload there is POST /-/reload only); its
# Ctrl+Break (SIGBREAK), which service wrappers may send, stops like Ctrl+C.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name))
RELOAD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGHUP",) if hasattr(signal, name))


class _Signals:
    """Installed first thing, so a signal at any moment of start-up already means a clean stop. The handler
    only sets the stop event and queues what happened; the main thread acts on it (it never raises into
    whatever the main thread is running)."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.stop = threading.Event()
        for signum in (*STOP_SIGNALS, *RELOAD_SIGNALS):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in RELOAD_SIGNALS:
            self.events.put(_RELOAD)
        else:
            self.stop.set()
            self.events.put(_STOP)

    def next_event(self) -> str:
        """The next event (a signal's, or `_DONE` put by the work); the timeout only bounds a missed wake-up."""
        while True:
            try:
                return self.events.get(timeout=1.0)
            except queue.Empty:
                continue


def main(argv: Sequence[str] | None = None) -> int:
    signals = _Signals()  # first of all: a signal during start-up already means a clean stop
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    from exporter.config import ConfigError, log_notices
    from exporter.config_file import load_config

    if args.max_requests < 0:
        return _bad("--web.max-requests: must be 0 (no limit) or more")
    if args.max_connections < 1:
        return _bad("--web.max-connections: must be 1 or more")
    if not args.telemetry_path.startswith("/") or args.telemetry_path.startswith("/-/") or args.telemetry_path == "/":
        return _bad("--web.telemetry-path: must start with / and not be / or under /-/")

    simulator = None
    try:
        if args.demo and args.check_config:
            from exporter.simulator import DEMO_JWT

            config = demo_config("http://127.0.0.1", DEMO_JWT)  # checked as it is, without a simulator
        elif args.demo:
            from exporter.simulator import Simulator

            simulator = Simulator(generation_time=1.0).start()
            config = demo_config(simulator.url, simulator.jwt)
        else:
            config = load_config(_existing(args.config_file))
        if args.storage_path:
            config = replace(config, storage_path=args.storage_path)
        _check_storage(config, "--storage.path" if args.storage_path else "storage.path")
        if not args.once and not args.check_connection:
            address, web_config = _check_web(args)
        if args.check_config:
            source = "built-in demo configuration (--demo; --config.file is not read)" if args.demo \
                else args.config_file
            log_notices(config)  # only now: a refused config prints its one error line and nothing else
            print(f"{source}: OK ({_summary(config)})")
            return 0
    except (ConfigError, ValueError) as exc:
        if simulator is not None:
            simulator.stop()
        return _bad(str(exc))
    try:
        if args.check_connection:
            from exporter.diagnose import check_connection

            log_notices(config)
            return check_connection(config.ncentral)
        if args.once:
            return _once(config, signals)
        return _serve(args, config, address, web_config, signals)
    finally:
        if simulator is not None:
            simulator.stop()


def _summary(config: Config) -> str:
    """What --check-config says the config asks for: each kind's collections, in the registry's order."""
    from exporter.registry import KINDS

    said = (kind.summary(kind.of(config.collections)) for kind in KINDS)
    return "; ".join(text for text in said if text)


def _existing(config_file: str) -> str:
    """`config_file`, or a ConfigError saying which flag a missing file calls for."""
    from pathlib import Path

    from exporter.config import ConfigError

    if not Path(config_file).exists():
        raise ConfigError(f"{config_file}: config file not found; give its path with --config.file PATH, "
                          "or run --demo to try the exporter on its built-in N-central simulator")
    return config_file


def _check_storage(config: Config, name: str) -> None:
    from exporter.config import ConfigError
    from exporter.store import check_storage_path

    if config.storage_path is not None:
        problem = check_storage_path(config.storage_path)
        if problem is not None:
            raise ConfigError(f"{name}: {problem}")


def _check_web(args: argparse.Namespace) -> tuple[tuple[str, int], WebConfig | None]:
    """What serving needs besides the config: checked the same way by start-up and --check-config."""
    import socket

    from exporter.config import ConfigError
    from exporter.web import parse_listen_address
    from exporter.webconfig import load_web_config

    address = parse_listen_address(args.listen_address)
    if address[0]:
        try:
            socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ValueError(f"--web.listen-address: cannot resolve host {address[0]!r}") from None
    try:
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as exc:
        raise ConfigError(f"--web.config.file: {exc}") from None
    return address, web_config


def _bad(message: str) -> int:
    print(f"ncentral-patch-exporter: error: {message}", file=sys.stderr)
    return 2


def _once(config: Config, signals: _Signals) -> int:
    """Run every collection once and print the metrics; 0 if all succeeded. A signal interrupts the run and
    exits 1, printing nothing."""
    from exporter.app import SHUTDOWN_GRACE, Exporter
    from exporter.config import log_notices
    from exporter.store import StateFileLocked
    from exporter.workers import DaemonPool

    try:
        exporter = Exporter(config, stop=signals.stop)
    except StateFileLocked as exc:
        return _bad(str(exc))
    log_notices(config)  # once the state file too was accepted
    # The runs go on a worker, so that the main thread can act on a signal while one is inside an HTTP call.
    worker = DaemonPool(1, "once")
    outcome = worker.submit(exporter.run_once)
    outcome.add_done_callback(lambda _: signals.events.put(_DONE))
    while signals.next_event() not in (_STOP, _DONE):
        pass  # SIGHUP: nothing to reload in a single run
    worker.shutdown(wait=False)
    interrupted = signals.stop.is_set()
    if interrupted:
        exporter.halt()  # a wait ends at once; an HTTP call by its deadline, which is not waited for
        worker.join(SHUTDOWN_GRACE)
    exporter.shutdown()
    if interrupted:
        log.warning("interrupted; no metrics printed")
        return 1
    ok = outcome.result()  # a bug in the run raises here, before anything is printed
    sys.stdout.buffer.write(exporter.exposition.render_collections())
    sys.stdout.flush()
    return 0 if ok else 1


def _serve(
    args: argparse.Namespace,
    config: Config,
    address: tuple[str, int],
    web_config: WebConfig | None,
    signals: _Signals,
) -> int:
    from exporter.app import Exporter
    from exporter.config import host_port, log_notices
    from exporter.config_file import load_config
    from exporter.store import StateFileLocked
    from exporter.web import WebServer
    from exporter.webconfig import WebConfig

    web_config = web_config or WebConfig()
    try:
        # A reload in --demo re-applies the built-in configuration: it has no file, and nothing to refuse.
        loader = (lambda: config) if args.demo else (lambda: load_config(args.config_file))
        exporter = Exporter(config, loader, stop=signals.stop)
    except StateFileLocked as exc:
        return _bad(str(exc))
    try:
        server = WebServer(exporter, address, args.telemetry_path, web_config,
                           web_config_file=args.web_config_file, max_requests=args.max_requests,
                           max_connections=args.max_connections, demo=args.demo)
    except OSError as exc:
        return _bad(f"--web.listen-address: cannot listen on {args.listen_address}: {exc.strerror}")
    # Only now, with the config, the flags, the state file and the address accepted: a refused start-up
    # prints its one error line and nothing else.
    log_notices(config)
    server.start()
    host, port = server.address
    log.info(
        "listening",
        extra={"address": host_port(host, port), "tls": web_config.tls is not None,
               "version": __version__, "collections": len(config.collections), "demo": args.demo},
    )
    if not signals.stop.is_set():
        exporter.start()
    while signals.next_event() != _STOP:
        exporter.reload()
    log.info("shutting down")
    # In order: no more requests, no more runs, the run under way halted (a bounded wait), the state
    # written, its file's lock released. A run still inside an HTTP call does not hold the exit: the
    # runs' threads are daemons (exporter.workers).
    server.shutdown()
    exporter.shutdown()
    log.info("stopped")
    return 0
