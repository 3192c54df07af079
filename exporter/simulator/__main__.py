"""`python -m exporter.simulator`: the simulator on its own, until interrupted."""

from __future__ import annotations

import argparse
import threading

from exporter.simulator.data import DEFAULT_VERSION, DEMO_JWT
from exporter.simulator.server import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator",
                                     description="N-central patch reports API simulator (loopback only).")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jwt", default=DEMO_JWT)
    parser.add_argument("--generation-time", type=float, default=2.0)
    parser.add_argument("--server-version", default=DEFAULT_VERSION,
                        help="the N-central release it claims (default: %(default)s; before 2025.4: no patch reports)")
    args = parser.parse_args()
    simulator = Simulator(
        jwt=args.jwt, port=args.port, generation_time=args.generation_time, version=args.server_version
    ).start()
    print(f"N-central {simulator.version} simulator on {simulator.url}; it accepts the JWT {simulator.jwt}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
