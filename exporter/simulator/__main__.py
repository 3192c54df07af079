"""`python -m exporter.simulator`: the simulator on its own, until interrupted."""

from __future__ import annotations

import argparse
import threading

from exporter.simulator.data import DEFAULT_VERSION, DEMO_JWT
from exporter.simulator.server import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="A simulated N-central (patch reports, devices and active issues API) on 127.0.0.1, until "
        "interrupted. Point the exporter's ncentral.url at the URL it prints, with the JWT it prints as the token.",
    )
    parser.add_argument("--port", type=int, default=0, metavar="PORT",
                        help="TCP port on 127.0.0.1 to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--jwt", default=DEMO_JWT, metavar="TOKEN",
                        help="the only API-user JWT it accepts at POST /api/auth/authenticate (default: %(default)s)")
    parser.add_argument("--generation-time", type=float, default=2.0, metavar="SECONDS",
                        help="seconds a submitted report stays IN_PROGRESS before it is COMPLETED "
                        "(default: %(default)s)")
    parser.add_argument("--server-version", default=DEFAULT_VERSION, metavar="RELEASE",
                        help="the N-central release it claims in GET /api/server-info/extra; before 2025.4 it has "
                        "no patch reports API and answers 404 there (default: %(default)s)")
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
