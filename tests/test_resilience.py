"""A hostile N-central and durable state. Every run bounded in time and memory, stored data tied to
its server, one exporter per state file. Each test runs the real code against the simulator over HTTP."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import MakeApp
from helpers import (
    ExporterProcess,
    Samples,
    config_document,
    make_config,
    report_result,
    reports_of,
    run_command,
    sample,
    scrape,
    select,
    wait_for,
    with_report,
    write_yaml,
)
from test_web import make_certificate

from exporter import logs, scrub
from exporter.app import Exporter
from exporter.client import NCentralClient
from exporter.config import Config, NCentralSettings
from exporter.diagnose import check_connection
from exporter.errors import ConnectionFailed, InvalidResponse
from exporter.report import parse_poll
from exporter.simulator import FIRST_REPORT_ID, Simulator
from exporter.store import server_identity

pytestmark = pytest.mark.long


def approvals(app: Exporter) -> dict[frozenset[tuple[str, str]], float]:
    return select(scrape(app), "ncentral_patch_approvals")


def failures(app: Exporter, reason: str) -> float | None:
    return sample(scrape(app), "ncentral_patch_report_failures_total", report="all", reason=reason)


@pytest.fixture
def app(sim: Simulator, make_app: MakeApp) -> Exporter:
    return make_app(make_config(sim))


def bounded(call: Callable[[], object], sim: Simulator, hang_bound: float = 20.0) -> BaseException | None:
    """What `call` raised (None if it returned); fails (freeing it by stopping the simulator) if it does not
    end in `hang_bound` seconds: a bound that only catches a hang."""
    raised: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(hang_bound)
    if worker.is_alive():
        sim.stop()
        raise AssertionError(f"the call still runs after {hang_bound}s")
    return raised[0]


def run_in_thread(app: Exporter, sim: Simulator, hang_bound: float = 30.0) -> bool:
    """The outcome of a run of report "all", bounded as `bounded` bounds a call."""
    outcome: list[bool] = []
    error = bounded(lambda: outcome.append(app.run("all")), sim, hang_bound)
    if error is not None:
        raise error
    return outcome[0]


# --- 1. every HTTP call ends by a wall-clock deadline, body included ---


@pytest.mark.parametrize("bound", ["report-timeout", "request-timeout"])
@pytest.mark.parametrize(("fault", "said"), [
    # Headers at once, Content-Length 100000, then one body byte every 0.3 s.
    ("drip", ("not complete within",)),
    # The status line at once, then one header byte every 0.3 s for hours.
    ("drip_headers", ("not complete within", "headers received")),
])
def test_a_dripping_answer_cannot_hold_a_run(
    sim: Simulator, bound: str, fault: str, said: tuple[str, ...], caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    """Each byte resets a socket timeout (`requests`' timeout bounds each read only), so only the call's
    wall-clock deadline, from the status line to the last body byte, ends it. The bound of 20 s only
    catches a hang."""
    config = make_config(sim, request_timeout=30.0 if bound == "report-timeout" else 1.0, retries=1)
    timeout = 2.0 if bound == "report-timeout" else 600.0
    config = with_report(config, timeout=timeout)
    app = make_app(config)
    assert app.run("all")
    sim.add_fault(fault, endpoint="poll", count=None, delay=0.3)
    assert run_in_thread(app, sim, hang_bound=20.0) is False
    assert failures(app, "connection") == 1
    line = next(r for r in caplog.records if r.getMessage() == "report run failed").__dict__
    assert all(text in line["error"] for text in said), line["error"]
    assert approvals(app)  # the last good data stays
    sim.clear_faults()
    assert app.run("all")


def test_once_ends_by_the_report_timeout_on_a_dripping_body(sim: Simulator, tmp_path: Path) -> None:
    sim.add_fault("drip", endpoint="poll", count=None, delay=0.3)
    document = config_document(sim, timeout="2s")
    document["ncentral"]["request_timeout"] = "30s"
    config = write_yaml(tmp_path / "config.yaml", document)
    result = run_command("--once", "--config.file", str(config), timeout=40)
    assert result.returncode == 1, result.stderr
    assert "report run failed" in result.stderr and "reason=connection" in result.stderr
    assert "not complete within" in result.stderr


def test_once_ends_by_the_report_timeout_on_dripping_headers(sim: Simulator, tmp_path: Path) -> None:
    """The reviewer's case: request_timeout 2s, no retries, report timeout 3s, headers that would drip for
    hours. The command must end (20 s only catches a hang) and fail with reason connection."""
    sim.add_fault("drip_headers", endpoint="poll", count=None, delay=0.5)
    document = config_document(sim, timeout="3s")
    document["ncentral"]["request_timeout"] = "2s"
    document["ncentral"]["retries"] = 0
    config = write_yaml(tmp_path / "config.yaml", document)
    result = run_command("--once", "--config.file", str(config), timeout=20)
    assert result.returncode == 1, result.stderr
    assert "report run failed" in result.stderr and "reason=connection" in result.stderr
    assert "not complete within 2.0s" in result.stderr


@pytest.mark.parametrize("endpoint", ["health", "devices", "authenticate"])
def test_dripping_headers_end_every_kind_of_call_by_its_deadline(sim: Simulator, endpoint: str) -> None:
    """--check-connection's health call, the customer scan's paged GETs and authentication go through the
    same call: each ends at its deadline with a connection failure that says so."""
    client = NCentralClient(NCentralSettings(url=sim.url, token=sim.jwt, request_timeout=1.0, retries=0))
    try:
        if endpoint != "authenticate":
            client.authenticate(time.monotonic() + 10)
        sim.add_fault("drip_headers", endpoint=endpoint, count=None, delay=0.3)
        deadline = time.monotonic() + 600
        calls: dict[str, Callable[[], object]] = {
            "health": lambda: client.health(deadline),
            "devices": lambda: client.get("/api/devices?pageNumber=1&pageSize=50", deadline),
            "authenticate": lambda: client.authenticate(deadline),
        }
        error = bounded(calls[endpoint], sim)
        assert isinstance(error, ConnectionFailed), error
        assert error.reason == "connection"
        assert "not complete within 1.0s" in error.message and "headers received" in error.message
        sim.clear_faults()
        assert client.health(time.monotonic() + 10)  # the next call on the same client is fine
    finally:
        client.close()


def test_check_connection_ends_on_dripping_headers(sim: Simulator) -> None:
    """--check-connection against a server whose headers never end: the first step fails by its deadline."""
    sim.add_fault("drip_headers", endpoint="health", count=None, delay=0.3)
    out = io.StringIO()
    settings = NCentralSettings(url=sim.url, token=sim.jwt, request_timeout=1.0, retries=0)
    codes: list[int] = []
    assert bounded(lambda: codes.append(check_connection(settings, out)), sim) is None
    lines = out.getvalue().splitlines()
    assert codes == [1]
    assert lines[0].startswith("FAIL  URL answers: ") and "not complete within 1.0s" in lines[0], lines


def test_dripping_headers_over_tls_cannot_hold_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, make_app: MakeApp
) -> None:
    """The same over HTTPS: the deadline bounds reads through the TLS socket. (REQUESTS_CA_BUNDLE set, as in
    many containers, must not override ncentral.ca_bundle.)"""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    cert, key = make_certificate(tmp_path)
    with Simulator(tls=(str(cert), str(key))) as sim:
        assert sim.url.startswith("https://")
        config = make_config(sim, ca_bundle=str(cert), request_timeout=1.0, retries=1)
        app = make_app(config)
        try:
            assert app.run("all")
            sim.add_fault("drip_headers", endpoint="poll", count=None, delay=0.3)
            assert run_in_thread(app, sim, hang_bound=20.0) is False
            assert failures(app, "connection") == 1
            line = next(r for r in caplog.records if r.getMessage() == "report run failed").__dict__
            assert "not complete within 1.0s" in line["error"]
            sim.clear_faults()
            assert app.run("all")
        finally:
            app.shutdown()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_calls_still_share_one_kept_alive_connection(sim: Simulator, tmp_path: Path, scheme: str) -> None:
    """Reading by the deadline leaves connection pooling as it was: a client's calls share one connection."""
    cert, key = make_certificate(tmp_path)
    with Simulator(tls=(str(cert), str(key)) if scheme == "https" else None) as server:
        settings = NCentralSettings(url=server.url, token=server.jwt, ca_bundle=str(cert), retries=0)
        client = NCentralClient(settings)
        try:
            client.authenticate(time.monotonic() + 10)
            for _ in range(3):
                client.health(time.monotonic() + 10)
            ports = [request.client_port for request in server.requests]
            assert len(ports) >= 6  # authenticate, server-info, server-info/extra, health x3
            assert len(set(ports)) == 1, ports  # all on one connection
        finally:
            client.close()


def stored_then_edited(make_app: MakeApp, config: Config, edit: Callable[[dict[str, Any]], None]) -> Samples:
    """Run once with a state file, stop, let `edit` change the stored document, and return what the first
    exporter served."""
    first = make_app(config)
    assert first.run("all")
    served = scrape(first)
    first.shutdown()
    state = Path(config.storage_path or "")
    document = json.loads(state.read_text())
    edit(document)
    state.write_text(json.dumps(document))
    return served


# --- 2. stored in-flight ids and results are tied to their server ---


def interrupted_in_flight(make_app: MakeApp, sim: Simulator, config: Config) -> int:
    """Run once (data stored), then leave a report in flight at `sim` and stop: its id stays stored."""
    first = make_app(config)
    assert first.run("all")
    sim.set_generation_time(3600)
    worker = threading.Thread(target=first.run, args=("all",), daemon=True)
    worker.start()
    wait_for(lambda: sim.count("poll") >= 2)
    first.shutdown()
    worker.join(10)
    first.close()
    state = json.loads(Path(config.storage_path or "").read_text())["collections"]["all"]["result"]
    assert state["data"] is not None and state["in_flight"] is not None
    return int(state["in_flight"]["report_id"])


def another_server() -> Simulator:
    """A second N-central that already holds someone else's report under the first server's ids."""
    other = Simulator(jwt="other-server-jwt-0123456789").start()
    other.set_data({"deviceClassSummaries": [
        {"deviceClass": "Someone Else's Servers", "approvalStatusCounts": {"declined": 99}},
    ]})
    other.set_generation_time(0)
    # Someone else's reports, submitted over HTTP (its own user agent keeps them out of `report_calls`).
    headers = {"User-Agent": SOMEONE_ELSE}
    tokens = requests.post(f"{other.url}/api/auth/authenticate", timeout=10,
                           headers={**headers, "Authorization": f"Bearer {other.jwt}"}).json()["tokens"]
    for _ in range(3):
        submitted = requests.post(f"{other.url}/api/report/patch-comparison", json={"startDate": "2025-08-01"},
                                  headers={**headers, "Authorization": f"Bearer {tokens['access']['token']}"},
                                  timeout=10)
        assert submitted.ok, submitted.text
    return other


SOMEONE_ELSE = "someone-else/1.0"


def report_calls(sim: Simulator) -> list[str]:
    """The exporter's submits and polls."""
    return [f"{r.method} {r.path}" for r in sim.requests
            if r.endpoint in ("submit", "poll") and r.headers.get("User-Agent") != SOMEONE_ELSE]


def test_a_restart_against_another_server_drops_the_stored_id_and_results(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    state = tmp_path / "state.json"
    report_id = interrupted_in_flight(make_app, sim, make_config(sim, storage=state))
    other = another_server()
    try:
        caplog.clear()
        app = make_app(replace(make_config(other, storage=state)))
        try:
            changed = [r for r in caplog.records if "server (URL or API user)" in r.getMessage()]
            assert len(changed) == 1
            assert approvals(app) == {}  # nothing of the old server's served as the new one's
            assert app.not_ready() is not None
            assert app.run("all")
        finally:
            app.shutdown()
        assert f"GET /api/report/{report_id}" not in report_calls(other)
        assert report_calls(other)[0] == "POST /api/report/patch-comparison"
        assert {dict(k)["device_class"] for k in approvals(app)} == {"Someone Else's Servers"}
    finally:
        other.stop()


def test_a_reload_to_another_server_drops_the_stored_id_and_results(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    state = tmp_path / "state.json"
    config = make_config(sim, storage=state)
    other = another_server()
    new_config = make_config(other, storage=state)
    app = make_app(config, lambda: new_config)
    try:
        assert app.run("all")
        sim.set_generation_time(3600)
        worker = threading.Thread(target=app.run, args=("all",), daemon=True)
        worker.start()
        wait_for(lambda: sim.count("poll") >= 2)
        in_flight = report_result(app.store.snapshot["all"]).in_flight
        assert in_flight is not None
        caplog.clear()
        assert app.reload() is None
        assert len([r for r in caplog.records if "server (URL or API user)" in r.getMessage()]) == 1
        assert approvals(app) == {}  # nothing of the old server's served as the new one's
        worker.join(20)  # the run in progress notices the new server and starts afresh there
        assert not worker.is_alive()
        assert f"GET /api/report/{in_flight.report_id}" not in report_calls(other)
        assert report_calls(other)[0] == "POST /api/report/patch-comparison"
        assert {dict(k)["device_class"] for k in approvals(app)} == {"Someone Else's Servers"}
        stored = json.loads(state.read_text())
        assert stored["server"] == server_identity(new_config.ncentral)
    finally:
        other.stop()


def test_server_identity_follows_url_and_api_user_and_never_holds_the_token() -> None:
    def jwt(sub: str, signature: str) -> str:
        import base64

        claims = base64.urlsafe_b64encode(json.dumps({"sub": sub, "iss": "nc"}).encode()).decode().rstrip("=")
        return f"eyJhbGciOiJIUzI1NiJ9.{claims}.{signature}"

    def ident(url: str, token: str) -> str:
        return server_identity(NCentralSettings(url=url, token=token))

    base = ident("https://nc.example.com", jwt("api-user", "sig-one"))
    assert base == ident("https://nc.example.com/", jwt("api-user", "sig-two"))  # a renewed JWT, same user
    assert base != ident("https://other.example.com", jwt("api-user", "sig-one"))
    assert base != ident("https://nc.example.com", jwt("another-user", "sig-one"))
    assert ident("https://nc.example.com", "opaque-token-1") != ident("https://nc.example.com", "opaque-token-2")
    assert "sig" not in base and "api-user" not in base


# --- 3. memory: a report with more series than max_series is refused before it is built ---


def test_a_report_over_max_series_is_invalid_and_the_good_data_stays(sim: Simulator, make_app: MakeApp) -> None:
    app = make_app(make_config(sim, max_series=30))
    assert app.run("all")
    good = approvals(app)
    assert len(good) == 15
    sim.set_data({"deviceClassSummaries": [
        {"deviceClass": f"Class {n}", "approvalStatusCounts": {"declined": n}} for n in range(7)
    ]})
    assert not app.run("all")
    assert failures(app, "invalid_response") == 1
    assert "max_series=30" in (app.store.snapshot["all"].last_error or "")
    assert approvals(app) == good


# --- 4. header values parsed strictly ---


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-1", "1e3", "Wed, 99 Foo 2025 99:99:99 GMT", "3\u00b2"])
def test_an_odd_retry_after_is_ignored(sim: Simulator, app: Exporter, value: str) -> None:
    sim.add_fault("429", endpoint="poll", count=1, retry_after=value)
    assert app.run("all")
    assert failures(app, "internal") == 0
    assert sim.count("poll") == 2  # retried after the usual backoff


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "12abc", "+5", "5, 6"])
def test_an_odd_content_length_is_an_invalid_response(sim: Simulator, app: Exporter, value: str) -> None:
    assert app.run("all")
    good = approvals(app)
    sim.add_fault("bad_length", endpoint="poll", count=None, value=value)
    assert not app.run("all")
    assert failures(app, "invalid_response") == 1
    assert failures(app, "internal") == 0
    assert "Content-Length" in (app.store.snapshot["all"].last_error or "")
    assert approvals(app) == good


# --- 5. secrets scrubbed before quoting, however short ---


@pytest.mark.parametrize(("jwt", "log_format"), [
    ("jwt-with\\back\\slashes-and-\"quotes\"-0123456789", "text"),
    ("jwt-with\\back\\slashes-and-\"quotes\"-0123456789", "json"),
    ("k3y", "json"),
])
def test_an_echoed_token_never_reaches_logs_or_the_landing_page(
    sim: Simulator, tmp_path: Path, jwt: str, log_format: str
) -> None:
    """N-central's error page quotes the credentials it was sent (JSON-escaped, then quoted again by the
    exporter's excerpt and log format)."""
    sim.jwt = jwt
    sim.add_fault("echo_token", endpoint="authenticate", count=None)
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    exporter = ExporterProcess(tmp_path, "--config.file", str(config), f"--log.format={log_format}")
    try:
        exporter.wait_healthy()
        wait_for(lambda: "report run failed" in exporter.log())
        page = exporter.get("/").text
        log = exporter.log()
        assert "could not process credentials" in page and "could not process credentials" in log
        assert "<redacted>" in log
    finally:
        exporter.stop()
    for form in {jwt, json.dumps(jwt)[1:-1], repr(jwt)[1:-1], jwt.replace("\\", "\\\\\\\\")}:
        assert form not in log
        assert form not in page
    # No piece of the token between the characters quoting doubles survives either.
    for piece in (p for p in jwt.replace("\\", " ").replace('"', " ").split() if len(p) >= 6):
        assert piece not in log and piece not in page


def test_a_quoted_value_is_scrubbed_before_repr_doubles_its_backslashes() -> None:
    token = "leak\\ed-token-\\-9876543210"
    scrub.register_secret(token)
    with pytest.raises(InvalidResponse) as caught:
        parse_poll({"reportStatus": "ODD", "message": f"echo {token}"}, 1)
    assert "leak" not in caught.value.message and "<redacted>" in caught.value.message
    short = "zq9"
    scrub.register_secret(short)
    assert scrub.scrub(f"a {short} b") == "a <redacted> b"
    for log_format in logs.FORMATS:
        stream = io.StringIO()
        handler = logs.handler(log_format, stream)
        try:
            raise ValueError(f"failed with {token}")
        except ValueError:
            record = logging.LogRecord("x", logging.INFO, "", 0, "token %s", (token,), sys.exc_info())
        record.detail = f"it was {token!r}"  # quoted: repr doubled its backslashes
        record.tokens = [token, {"nested": (token,)}]
        handler.handle(record)
        line = stream.getvalue()
        assert "leak" not in line and line.count("<redacted>") >= 5


# --- 6. wrong shapes are invalid_response, the last good data stays ---


def with_counts(counts: object) -> dict[str, Any]:
    return {"deviceClassSummaries": [{"deviceClass": "Laptops", "approvalStatusCounts": counts}]}


WRONG_SHAPES: dict[str, dict[str, Any]] = {
    "counts-list": with_counts([]),
    "counts-zero": with_counts(0),
    "counts-false": with_counts(False),
    "counts-empty-string": with_counts(""),
    "summaries-null": {"deviceClassSummaries": None},
    "two-keys-one-label": with_counts({"noApproval": 3, "no_approval": 4}),
    "two-keys-one-label-spaced": with_counts({"Declined": 3, "declined": 4}),
    # Each count within 2**53, their sum beyond it: a total the next start-up would refuse to load.
    "sum-beyond-the-load-bound": {"deviceClassSummaries": [
        {"deviceClass": "Laptops", "approvalStatusCounts": {"noApproval": 2**53}},
        {"deviceClass": "Laptops", "approvalStatusCounts": {"noApproval": 2**53}},
    ]},
}


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
def test_a_wrong_shape_is_invalid_and_the_good_data_stays(sim: Simulator, app: Exporter, shape: str) -> None:
    assert app.run("all")
    good = approvals(app)
    sim.set_data(WRONG_SHAPES[shape])
    assert not app.run("all")
    assert failures(app, "invalid_response") == 1
    assert approvals(app) == good


@pytest.mark.parametrize("report_id", [-1, 2**31, 10**30])
def test_a_report_id_out_of_range_is_invalid(sim: Simulator, app: Exporter, report_id: int) -> None:
    assert app.run("all")
    good = approvals(app)
    sim.add_fault("bad_report_id", endpoint="submit", count=None, value=str(report_id))
    assert not app.run("all")
    assert failures(app, "invalid_response") == 1
    assert approvals(app) == good
    assert not any(r.path == f"/api/report/{report_id}" for r in sim.requests)


def test_counts_left_out_or_null_are_zero(sim: Simulator, app: Exporter) -> None:
    sim.set_data({"deviceClassSummaries": [{"deviceClass": "A"}, {"deviceClass": "B", "approvalStatusCounts": None}]})
    assert app.run("all")
    assert set(approvals(app).values()) == {0}


# --- 7. one exporter per state file; one bad entry costs only itself ---


def test_a_second_exporter_on_the_same_state_file_exits_2(sim: Simulator, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    first = ExporterProcess(tmp_path, "--config.file", str(config), f"--storage.path={state}")
    try:
        first.wait_healthy()
        for mode in ([], ["--once"]):
            second = run_command(*mode, "--config.file", str(config), f"--storage.path={state}", timeout=30)
            assert second.returncode == 2, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and str(state) in lines[0] and "another exporter" in lines[0], lines
            assert "Traceback" not in second.stderr
    finally:
        assert first.stop() == 0
    # Once the first is gone, the file is free again.
    third = run_command("--once", "--config.file", str(config), f"--storage.path={state}", timeout=30)
    assert third.returncode == 0, third.stderr


def test_one_corrupt_entry_does_not_discard_the_others(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    config = make_config(sim, storage=tmp_path / "state.json")
    config = replace(config, collections=(*config.collections, replace(reports_of(config)[0], name="other")))

    def add_corrupt_entry(document: dict[str, Any]) -> None:
        document["collections"]["other"]["result"] = {"data": {"approvals": [["A", "declined", -1]], "installs": []}}

    good = select(stored_then_edited(make_app, config, add_corrupt_entry), "ncentral_patch_approvals")
    second = make_app(config)
    assert approvals(second) == good
    assert any(
        r.getMessage() == "ignoring an unreadable entry of the state file"
        and r.__dict__["report"] == "other"
        for r in caplog.records
    )


# --- 8. the state is written only on change; a killed writer's temporary files go at start-up ---


def test_a_reload_with_nothing_changed_writes_nothing(sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    state = tmp_path / "state.json"
    config = make_config(sim, storage=state)
    app = make_app(config, lambda: config)
    assert app.run("all")
    before, text = state.stat(), state.read_text()
    for _ in range(5):
        assert app.reload() is None
    app.store.save()
    after = state.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino, before.st_mtime_ns, before.st_ctime_ns
    )
    assert app.run("all")  # a change is still written
    assert state.read_text() != text


def test_temporary_files_of_a_killed_writer_are_removed_at_start_up(
    sim: Simulator, tmp_path: Path, make_app: MakeApp,
) -> None:
    state = tmp_path / "state.json"
    left = [tmp_path / ".state.json.k1ll3d", tmp_path / ".state.json.abc_12"]
    for path in left:
        path.write_text('{"version": 1, "rep')  # young: written a moment ago
    unrelated = tmp_path / ".other.json.abc"
    unrelated.write_text("{}")
    app = make_app(make_config(sim, storage=state))
    app.shutdown()
    assert not any(path.exists() for path in left)
    assert unrelated.exists()


# --- 9. implausible stored timestamps are refused on load ---


@pytest.mark.parametrize("key", ["last_success_time", "last_run_time", "in_flight"])
def test_a_stored_timestamp_in_the_future_is_refused(
    sim: Simulator, tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture, make_app: MakeApp
) -> None:
    config = make_config(sim, storage=tmp_path / "state.json")
    future = time.time() + 86400 * 365 * 3000  # the year ~5000

    def set_future(document: dict[str, Any]) -> None:
        entry = document["collections"]["all"]
        if key == "in_flight":
            entry["result"][key] = {"report_id": FIRST_REPORT_ID, "submitted_at": future}
        else:
            entry[key] = future

    stored_then_edited(make_app, config, set_future)
    second = make_app(config)
    stamp = sample(scrape(second), "ncentral_patch_report_last_success_timestamp_seconds", report="all")
    assert stamp is None or stamp < time.time() + 300
    assert any("in the future" in str(r.__dict__.get("error", "")) for r in caplog.records)


def test_a_stored_timestamp_within_the_clock_skew_is_kept(sim: Simulator, tmp_path: Path, make_app: MakeApp) -> None:
    config = make_config(sim, storage=tmp_path / "state.json")
    stored_then_edited(make_app, config, lambda document: document["collections"]["all"].update(
        last_success_time=time.time() + 60))
    second = make_app(config)
    assert approvals(second)

