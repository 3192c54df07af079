"""The web front of the real command: landing page, readiness, TLS and basic auth, reload."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml
from conftest import MakeApp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import (
    ExporterProcess,
    config_document,
    config_file,
    parse_samples,
    sample,
    select,
    wait_for,
    write_yaml,
)

from exporter import web
from exporter.app import Exporter
from exporter.config import Config, ConfigError, NCentralSettings
from exporter.reports import ReportSettings
from exporter.simulator import Simulator
from exporter.webconfig import WebConfig, load_web_config

pytestmark = pytest.mark.long

SCRIPT_CLASS = "<script>alert(1)</script>"
LOOPBACK_SAN = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


def data_with_classes(*names: str) -> dict[str, object]:
    return {
        "deviceClassSummaries": [
            {"deviceClass": name, "approvalStatusCounts": {"noApproval": 10 * (i + 1), "approvedForInstall": 5}}
            for i, name in enumerate(names)
        ]
    }


def test_landing_page_shows_reports_and_escapes_device_classes(sim: Simulator, tmp_path: Path) -> None:
    sim.set_data(data_with_classes(SCRIPT_CLASS, "Laptops & Desktops"))
    config = write_yaml(tmp_path / "config.yaml", config_document(sim, patch_approvals=["No Approval"]))
    exporter = ExporterProcess(tmp_path, "--config.file", str(config))
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        page = exporter.get("/")
        assert page.headers["Content-Type"].startswith("text/html")
        html = page.text
        assert SCRIPT_CLASS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "Laptops &amp; Desktops" in html
        assert 'href="/metrics"' in html and 'href="/-/healthy"' in html and 'href="/-/ready"' in html
        assert "No Approval" in html  # the report's filter
        assert "success" in html and "next run" in html
        assert html.count('<g class="bar"') == 2
        assert "<script" not in html.replace("&lt;script", "")  # no JavaScript at all
        assert sim.jwt not in html
    finally:
        exporter.stop()


def test_ready_flips_from_503_to_200(sim: Simulator, tmp_path: Path) -> None:
    sim.set_generation_time(3600)
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim))
    try:
        exporter.wait_healthy()
        wait_for(lambda: sim.count("poll") >= 1)
        not_ready = exporter.get("/-/ready")
        assert not_ready.status_code == 503
        assert "no data yet for report(s): all" in not_ready.text
        sim.finish_reports()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
    finally:
        exporter.stop()


def make_certificate(
    directory: Path,
    stem: str = "tls",
    san: x509.GeneralName = LOOPBACK_SAN,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> tuple[Path, Path]:
    """A certificate and key in PEM files; self-signed unless `issuer` (a CA's certificate and key) is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), False)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_and_basic_auth(sim: Simulator, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    web_config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": cert.name, "key_file": key.name},
        "basic_auth_users": {"prometheus": hashed},
    }))
    check = subprocess.run(["promtool", "check", "web-config", str(web_config)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    base = f"https://127.0.0.1:{exporter.port}"
    try:
        def healthy() -> bool:
            assert exporter.process.poll() is None, exporter.log()
            try:
                return requests.get(f"{base}/-/healthy", verify=str(cert), timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{exporter.port}/-/healthy", timeout=2)
        for path in ("/metrics", "/", "/-/ready"):
            assert requests.get(f"{base}{path}", verify=str(cert), timeout=5).status_code == 401
            wrong = requests.get(f"{base}{path}", verify=str(cert), timeout=5, auth=("prometheus", "wrong"))
            assert wrong.status_code == 401
            assert wrong.headers["WWW-Authenticate"].startswith("Basic")
            stranger = requests.get(f"{base}{path}", verify=str(cert), timeout=5, auth=("mallory", "s3cret-pass"))
            assert stranger.status_code == 401
        good = requests.get(f"{base}/metrics", verify=str(cert), timeout=5, auth=("prometheus", "s3cret-pass"))
        assert good.status_code == 200
        assert "ncentral_patch_exporter_build_info" in good.text
        post = requests.post(f"{base}/-/reload", verify=str(cert), timeout=5)
        assert post.status_code == 401
    finally:
        exporter.stop()


def test_client_certificates_and_allowed_sans(sim: Simulator, tmp_path: Path) -> None:
    server_cert, server_key = make_certificate(tmp_path)
    ca_cert, ca_key = make_certificate(tmp_path, "ca", x509.DNSName("ca"))
    ca = (
        x509.load_pem_x509_certificate(ca_cert.read_bytes()),
        serialization.load_pem_private_key(ca_key.read_bytes(), None),
    )
    assert isinstance(ca[1], ec.EllipticCurvePrivateKey)
    issuer = (ca[0], ca[1])
    allowed = make_certificate(tmp_path, "scraper", x509.DNSName("scraper"), issuer)
    other = make_certificate(tmp_path, "intruder", x509.DNSName("intruder"), issuer)
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"tls_server_config": {
        "cert_file": server_cert.name, "key_file": server_key.name, "client_ca_file": ca_cert.name,
        "client_auth_type": "RequireAndVerifyClientCert", "client_allowed_sans": ["scraper"],
    }}))
    # (Debian's promtool 2.42 predates client_allowed_sans, so it is not asked about this file.)
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    base = f"https://127.0.0.1:{exporter.port}"

    def get(cert: tuple[Path, Path] | None) -> int:
        client = (str(cert[0]), str(cert[1])) if cert else None
        return requests.get(f"{base}/metrics", verify=str(server_cert), cert=client, timeout=5).status_code

    try:
        wait_for(lambda: exporter.process.poll() is None and _answers(get, allowed))
        assert get(allowed) == 200
        for refused in (None, other):
            with pytest.raises(requests.exceptions.RequestException):
                get(refused)
    finally:
        exporter.stop()


def _answers(get: Callable[[tuple[Path, Path] | None], int], cert: tuple[Path, Path]) -> bool:
    try:
        return get(cert) == 200
    except requests.exceptions.RequestException:
        return False


def test_bad_web_config_exits_2(sim: Simulator, tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n  prometheus: plain-text-password\n")
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config))
    assert exporter.process.wait(timeout=15) == 2
    output = exporter.log().strip()
    assert len(output.splitlines()) == 1
    assert "basic_auth_users.prometheus: must be a bcrypt hash" in output


def reload_metrics(exporter: ExporterProcess) -> tuple[float | None, float | None]:
    samples = exporter.scrape()
    return (
        sample(samples, "ncentral_patch_exporter_config_last_reload_successful"),
        sample(samples, "ncentral_patch_exporter_config_last_reload_success_timestamp_seconds"),
    )


@pytest.mark.parametrize("trigger", ["http", "sighup"])
def test_reload_good_and_bad_config(sim: Simulator, tmp_path: Path, trigger: str) -> None:
    path = tmp_path / "config.yaml"
    write_yaml(path, config_document(sim))
    exporter = ExporterProcess(tmp_path, "--config.file", str(path))

    def reload() -> requests.Response | None:
        if trigger == "http":
            return requests.post(f"{exporter.url}/-/reload", timeout=10)
        exporter.signal(signal.SIGHUP)
        return None

    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        ok, first_time = reload_metrics(exporter)
        assert ok == 1

        # A good config: a second report appears, the first one keeps its data (same filters).
        document = config_document(sim)
        security = {**document["reports"][0], "name": "security", "patch_categories": ["Security Updates"]}
        document["reports"].append(security)
        write_yaml(path, document)
        answer = reload()
        if answer is not None:
            assert answer.status_code == 200
        wait_for(lambda: reload_metrics(exporter)[1] != first_time)
        wait_for(lambda: sample(exporter.scrape(), "ncentral_patch_report_runs_total", report="security") == 1)
        assert sample(exporter.scrape(), "ncentral_patch_report_runs_total", report="all") == 1
        assert reload_metrics(exporter)[0] == 1

        # A bad config is refused and the old one kept.
        path.write_text("ncentral: {url: nowhere}\n")
        answer = reload()
        if answer is not None:
            assert answer.status_code == 400
            assert "ncentral.url" in answer.text
        wait_for(lambda: reload_metrics(exporter)[0] == 0)
        assert exporter.process.poll() is None
        samples = exporter.scrape()
        assert select(samples, "ncentral_patch_approvals", report="security")
        assert "configuration reload refused" in exporter.log()
    finally:
        assert exporter.stop() == 0


def test_reload_with_changed_filters_starts_the_report_afresh(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write_yaml(path, config_document(sim))
    exporter = ExporterProcess(tmp_path, "--config.file", str(path))
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        sim.set_generation_time(3600)
        write_yaml(path, config_document(sim, patch_approvals=["Declined"]))
        assert requests.post(f"{exporter.url}/-/reload", timeout=10).status_code == 200
        samples = parse_samples(exporter.get("/metrics").text)
        assert select(samples, "ncentral_patch_approvals") == {}  # the old result answered other filters
        assert exporter.get("/-/ready").status_code == 503
        wait_for(lambda: sim.count("submit") == 2)
        assert next(r for r in reversed(sim.requests) if r.endpoint == "submit").json()["patchApprovals"] == [
            "Declined"
        ]
    finally:
        exporter.stop()


def test_landing_page_chart_renders_in_headless_chromium(sim: Simulator, tmp_path: Path) -> None:
    classes = ["Laptops - Windows", "Servers - Windows", SCRIPT_CLASS]
    sim.set_data(data_with_classes(*classes))
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim))
    try:
        exporter.wait_healthy()
        wait_for(lambda: exporter.get("/-/ready").status_code == 200)
        screenshot = tmp_path / "landing.png"
        common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  f"--user-data-dir={tmp_path / 'chromium'}"]
        shot = subprocess.run([*common, f"--screenshot={screenshot}", "--window-size=1200,900", exporter.url + "/"],
                              capture_output=True, text=True, timeout=90, check=False)
        assert screenshot.exists() and screenshot.stat().st_size > 1000, shot.stderr[-2000:]
        dom = subprocess.run([*common, "--dump-dom", exporter.url + "/"], capture_output=True, text=True, timeout=90,
                             check=False).stdout
        # The browser parsed the page into one bar group per device class, with drawn rectangles,
        # and the device class named like a script stayed text.
        bars = re.findall(r'<g class="bar"[^>]*>(.*?)</g>', dom, re.DOTALL)
        assert len(bars) == len(classes)
        assert all("<rect" in bar for bar in bars)
        assert "alert(1)" in dom and SCRIPT_CLASS not in dom
    finally:
        exporter.stop()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_requests_get_answers_not_tracebacks(sim: Simulator, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    exporter = ExporterProcess(tmp_path, "--config.file", config_file(tmp_path, sim), "--web.config.file",
                               str(web_config), "--log.format", "json")
    try:
        exporter.wait_healthy()
        long_password = requests.get(f"{exporter.url}/metrics", auth=("prometheus", "a" * 100), timeout=5)
        assert long_password.status_code == 401
        auth = ("prometheus", "right")
        assert requests.post(f"{exporter.url}/metrics", auth=auth, timeout=5).status_code == 405
        assert requests.head(f"{exporter.url}/metrics", auth=auth, timeout=5).status_code == 200
        refused = requests.get(f"{exporter.url}/metrics", auth=auth, timeout=5, headers={"Accept-Encoding": "gzip;q=0"},
                               stream=True)
        assert "Content-Encoding" not in refused.headers
        reload = b"POST /-/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.b64encode(b"prometheus:right")
        # Not a number; a digit, but not an ASCII one; more digits than int() reads.
        for length in (b"abc", "\u00b2".encode(), b"9" * 5000):
            answer = raw_request(exporter.port, reload + b"\r\nContent-Length: " + length + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 413")
        # A body no endpoint reads must not be taken for the next request on the connection.
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        for prefix in (b"POST /metrics HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n"):  # 405, and 401 (no credentials)
            answer = raw_request(exporter.port, prefix + b"Host: x\r\nContent-Length: "
                                 + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
            assert answer.count(b"HTTP/1.1 ") == 1, answer
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as connection:
            connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and hang up mid-request
        assert exporter.get("/-/healthy").status_code == 200
    finally:
        assert exporter.stop() == 0
    output = exporter.log()
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines  # the exporter did log (its start, the refused requests)
    assert all(line.startswith("{") for line in lines)


BAD_WEB_CONFIGS = [
    ("basic_auth_users: [a, b]\n", "basic_auth_users: must be a mapping"),
    ("http_server_config: {headers: [a]}\n", "http_server_config.headers: must be a mapping"),
    ("tls_server_config: {cert_file: c.pem}\n", "cert_file and key_file are both required"),
    ("tls_server_config: {client_allowed_sans: x}\n", "client_allowed_sans: must be a list"),
    ("colour: red\n", "web config.colour: unknown key"),
    ("basic_auth_users:\n  prometheus: plain-text-password\n", "basic_auth_users.prometheus: must be a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: '$2y$03$" + "a" * 53 + "'\n", "(cost 04 to 31)"),
    ("http_server_config: {headers: {X-Frame-Options: \"deny\\r\\nSet-Cookie: x\"}}\n", "must be one line"),
    ("http_server_config: {headers: {Set-Cookie: x}}\n", "headers.Set-Cookie: not one of"),
    # Read through the same bounded loader as the config file.
    ("basic_auth_users: " + "{a: " * 100_000 + "\n",
     "not valid YAML at line 1, column 276: nested more than 64 levels deep"),
    ("".join(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}" if level else "x"] * 9) + "]\n"
             for level in range(7)), "aliases (*name) expand the document by more than 10000 values"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_WEB_CONFIGS)
def test_bad_web_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    # The command's exit 2 with this line is test_bad_web_config_exits_2; the messages are checked here.
    web_config = tmp_path / "web.yml"
    web_config.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_web_config(str(web_config))
    message = str(error.value)
    assert "\n" not in message
    assert expected in message
    assert message.startswith(f"{web_config}: ")


def test_bad_certificate_files_are_one_line(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    (tmp_path / "encrypted.key").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ))
    cases = {
        "version-not-text": ({"cert_file": cert.name, "key_file": key.name, "min_version": [1]},
                             "min_version: unknown TLS version"),
        "encrypted-key": ({"cert_file": cert.name, "key_file": "encrypted.key"}, "an unencrypted PEM key is needed"),
        "bad-key": ({"cert_file": cert.name, "key_file": cert.name}, "cannot load certificate and key"),
        "bad-ca": ({"cert_file": cert.name, "key_file": key.name, "client_ca_file": "not-a-ca.pem",
                    "client_auth_type": "RequireAndVerifyClientCert"}, "holds no PEM certificate"),
        "any-cert-without-ca": ({"cert_file": cert.name, "key_file": key.name,
                                 "client_auth_type": "RequireAnyClientCert"}, "client_ca_file: required here"),
    }
    for name, (tls, expected) in cases.items():
        web_config = tmp_path / f"{name}.yml"
        web_config.write_text(yaml.safe_dump({"tls_server_config": tls}))
        with pytest.raises(ConfigError) as error:
            load_web_config(str(web_config))
        assert "\n" not in str(error.value), name
        assert expected in str(error.value), (name, str(error.value))


def slow_reloads(make_app: MakeApp) -> tuple[Exporter, threading.Event, threading.Event]:
    """An exporter whose reloads each wait until `release` is set; `entered` is set once one has begun."""
    entered, release = threading.Event(), threading.Event()
    config = Config(ncentral=NCentralSettings(url="https://nc.example.com", token="not-used-0123456789"),
                    collections=(ReportSettings(name="all"),))

    def slow_load() -> Config:
        entered.set()
        assert release.wait(30)
        return config

    return make_app(config, load_config=slow_load), entered, release


def test_a_slow_reload_holds_no_web_worker_and_another_is_refused(make_app: MakeApp) -> None:
    """A reload runs on a thread of its own: while a slow one runs, scrapes are answered and every other
    reload asked for gets 503 at once, rather than each holding a web worker until none is left."""
    app, entered, release = slow_reloads(make_app)
    server = web.WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig())
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(requests.post, f"{base}/-/reload", timeout=30)
            assert entered.wait(10)
            for _ in range(web.WORKERS + 1):
                refused = requests.post(f"{base}/-/reload", timeout=10)
                assert (refused.status_code, refused.text) == (
                    503, "A reload is already in progress, try again later.\n")
            assert requests.get(f"{base}/metrics", timeout=10).status_code == 200
            release.set()
            assert (first.result().status_code, first.result().text) == (200, "Reloaded\n")
    finally:
        release.set()
        server.shutdown()


def test_a_reload_still_running_after_its_wait_is_answered_503_and_goes_on(make_app: MakeApp) -> None:
    """POST /-/reload waits a bounded time for its reload: past it, 503 says the reload goes on (and is
    logged); it ends on its own, and the next reload is taken."""
    app, entered, release = slow_reloads(make_app)
    server = web.WebServer(app, ("127.0.0.1", 0), "/metrics", WebConfig())
    server.reload_wait = 0.2
    server.start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        waited = requests.post(f"{base}/-/reload", timeout=10)
        assert entered.is_set()
        assert (waited.status_code, waited.text) == (
            503, "The reload is still running after 0.2s; see the log for its outcome.\n")
        assert requests.post(f"{base}/-/reload", timeout=10).status_code == 503  # still the same one
        release.set()
        wait_for(lambda: requests.post(f"{base}/-/reload", timeout=10).status_code == 200 or None)
    finally:
        release.set()
        server.shutdown()


def test_reloads_onto_a_fifo_token_file_are_refused_and_scrapes_answered(sim: Simulator, tmp_path: Path) -> None:
    """The real command: reloads asked for at once, of a config whose token file is a FIFO nobody writes to,
    each end with a refusal; none holds a web worker, so /metrics and a clean stop still follow."""
    path = write_yaml(tmp_path / "config.yaml", config_document(sim))
    exporter = ExporterProcess(tmp_path, "--config.file", str(path))
    try:
        exporter.wait_healthy()
        fifo = tmp_path / "token.fifo"
        os.mkfifo(fifo)
        document = config_document(sim)
        del document["ncentral"]["api_token"]
        write_yaml(path, {**document, "ncentral": {**document["ncentral"], "api_token_file": str(fifo)}})
        with concurrent.futures.ThreadPoolExecutor(web.WORKERS + 1) as pool:
            answers = list(pool.map(lambda _: requests.post(f"{exporter.url}/-/reload", timeout=10),
                                    range(web.WORKERS + 1)))
        assert {answer.status_code for answer in answers} <= {400, 503}
        refused = [answer.text for answer in answers if answer.status_code == 400]
        assert refused and all(f"cannot read {fifo}: a FIFO (named pipe), not a regular file" in text
                               for text in refused)
        assert exporter.get("/metrics").status_code == 200
    finally:
        assert exporter.stop() == 0
