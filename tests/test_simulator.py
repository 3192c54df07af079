"""The simulator package itself: its standalone command, and an answer for every fault it offers.

(Everything else about it is what the other tests meet over HTTP.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from helpers import REPO, ChildProcess, free_port, wait_for

from exporter.simulator import FAULTS, Fault, RecordedRequest
from exporter.simulator.api import Answer, Drip, DripHeaders, Reset, Stall
from exporter.simulator.faults import reply


def test_the_standalone_command_serves_the_jwt_it_prints(tmp_path: Path) -> None:
    port, jwt = free_port(), "standalone-jwt-0123456789"
    args = [sys.executable, "-m", "exporter.simulator", f"--port={port}", f"--jwt={jwt}",
            "--server-version=2024.1.0.5"]
    url = f"http://127.0.0.1:{port}"
    with ChildProcess(args, tmp_path / "simulator.log", f"{url}/api/health", cwd=REPO) as simulator:
        started = f"N-central 2024.1.0.5 simulator on {url}; it accepts the JWT {jwt}"
        wait_for(lambda: started in simulator.log())
        answer = requests.post(f"{url}/api/auth/authenticate", headers={"Authorization": f"Bearer {jwt}"}, timeout=5)
        assert answer.status_code == 200
        access = answer.json()["tokens"]["access"]["token"]
        submit = requests.post(f"{url}/api/report/patch-comparison", json={"startDate": "2025-01-01"},
                               headers={"Authorization": f"Bearer {access}"}, timeout=5)
        assert submit.status_code == 404  # 2024.1 has no patch reports API


# Statuses of the answers that are neither an error status of their own nor a 200 with a broken body.
STATUSES = {"invalid_fields": 400, "echo_token": 500}


@pytest.mark.parametrize("kind", FAULTS)
def test_every_fault_has_its_own_answer(kind: str) -> None:
    request = RecordedRequest("GET", "/api/report/1", "poll", {"Authorization": "Bearer sent"}, b"")
    answer = reply(Fault(kind, "any", 1, retry_after="7", delay=0.5, value="12"), request)
    expected = {
        "reset": Reset(), "slow": Stall(0.5), "drip": Drip(100000, 0.5), "drip_headers": DripHeaders(60000, 0.5),
    }
    if kind in expected:
        assert answer == expected[kind]
    else:
        assert isinstance(answer, Answer)
        assert answer.status == (int(kind) if kind.isdigit() else STATUSES.get(kind, 200))
