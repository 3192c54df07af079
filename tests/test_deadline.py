"""exporter.deadline: a call made inside `call_deadline` ends by it, however slowly the simulator's answer
drips in, status line, headers or body; time is a counter here, advanced at every read."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from exporter.deadline import BodyTooSlow, DeadlineAdapter, call_deadline, read_body_until
from exporter.simulator import Simulator


class Ticks:
    """A monotonic clock that advances `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.mount("http://", DeadlineAdapter())
        yield session


def test_dripping_headers_end_the_call_at_its_deadline(sim: Simulator, http: requests.Session) -> None:
    sim.add_fault("drip_headers", endpoint="server_info", count=None, delay=0.01)
    with call_deadline(1.0, Ticks(0.1)) as clock, pytest.raises(requests.exceptions.Timeout):
        http.get(f"{sim.url}/api/server-info", timeout=30, stream=True)
    assert 0 < clock.received < 1000  # the status line and a few header bytes of the 60,000 it would send


def test_a_dripping_body_ends_at_the_deadline(sim: Simulator, http: requests.Session) -> None:
    sim.add_fault("drip", endpoint="server_info", count=None, delay=0.01)
    ticks = Ticks(0.1)
    with (call_deadline(5.0, ticks), http.get(f"{sim.url}/api/server-info", timeout=30, stream=True) as response,
          pytest.raises(BodyTooSlow) as slow):
        read_body_until(response, 2**20, 5.0, ticks)
    assert slow.value.status == 200
    assert slow.value.received < 1000  # of the 100,000 bytes it would send


def test_a_body_over_the_cap_is_not_read_to_its_end(sim: Simulator, http: requests.Session) -> None:
    deadline = time.monotonic() + 30
    with call_deadline(deadline), http.get(f"{sim.url}/api/server-info", timeout=30, stream=True) as response:
        assert read_body_until(response, 10, deadline) is None


def test_an_answer_in_time_is_read_whole_inside_and_outside_a_deadline(
    sim: Simulator, http: requests.Session
) -> None:
    deadline = time.monotonic() + 30
    with (call_deadline(deadline) as clock,
          http.get(f"{sim.url}/api/server-info", timeout=30, stream=True) as response):
        inside = read_body_until(response, 2**20, deadline)
    assert clock.received > 0
    with http.get(f"{sim.url}/api/server-info", timeout=30, stream=True) as response:
        outside = read_body_until(response, 2**20, deadline)
    # Unauthenticated, the simulator answers 401 with a JSON error document: whole, both times.
    assert inside is not None and outside is not None
    assert json.loads(inside)["status"] == json.loads(outside)["status"] == 401


def test_a_silent_server_is_left_at_the_deadline_not_at_the_read_timeout(
    sim: Simulator, http: requests.Session
) -> None:
    """Each read waits only for the time left: a server that answers after the deadline (here in one piece,
    so no later read would notice) is not waited for until the per-read timeout."""
    sim.add_fault("slow", endpoint="server_info", delay=2.0)
    with call_deadline(time.monotonic() + 0.2) as clock, pytest.raises(requests.exceptions.Timeout):
        http.get(f"{sim.url}/api/server-info", timeout=30)
    assert clock.received == 0


def test_a_tls_handshake_nobody_answers_ends_at_the_deadline(http: requests.Session) -> None:
    """Connecting and the TLS handshake get only the time left too: a listener that never accepts (the kernel
    completes the TCP handshake, nobody answers the ClientHello) is left at the deadline, not after the
    per-read timeout (60 s here; the join only catches that wait)."""
    listener = socket.create_server(("127.0.0.1", 0))
    http.mount("https://", DeadlineAdapter())
    raised: list[Exception] = []

    def call() -> None:
        try:
            with call_deadline(time.monotonic() + 0.2):
                http.get(f"https://127.0.0.1:{listener.getsockname()[1]}/", timeout=60, verify=False)
        except requests.exceptions.RequestException as exc:
            raised.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(20)
    listener.close()  # resets the connection, should the call still wait
    assert not worker.is_alive() and raised, "the handshake was waited for past the call's deadline"
    assert isinstance(raised[0], requests.exceptions.Timeout | requests.exceptions.ConnectionError), raised
