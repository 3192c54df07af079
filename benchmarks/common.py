"""Shared pieces of the benchmarks: synthetic report data, server subprocesses, a keep-alive load generator.

Everything binds and connects to 127.0.0.1 only, and every load phase is bounded both in requests and in
seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.report import ReportData
    from exporter.store import Store

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
SIMULATOR_JWT = "bench-jwt-0123456789abcdef"
# The goal is "under 60 MB"; read as 60·10⁶ bytes, the stricter reading, that is 57.2 MiB.
RSS_LIMIT_MIB = 60e6 / 2**20
RSS_TARGET = "< 60 MB (57.2 MiB)"

_APPROVALS = ("declined", "notApproved", "approvedForRemoval", "noApproval", "approvedForInstall")
_APPROVAL_NAMES = ("Approved for Install", "No Approval", "Not Approved", "Declined", "Approved for Removal")
_INSTALL_NAMES = ("Installed", "Not Installed", "Aborted", "Failed", "In Progress", "Installed With Errors")


def vendor_data(series: int) -> dict[str, Any]:
    """A report's `data` object (N-central's JSON shape) that becomes exactly `series` report series:
    four fifths device-class approval counts (five per class), the rest install counts."""
    classes = max(1, (series * 4 // 5) // len(_APPROVALS))
    installs = series - classes * len(_APPROVALS)
    summaries = [
        {
            "deviceClass": f"Device Class {index:05d} - Windows",
            "approvalStatusCounts": {key: (index * 37 + k * 11) % 5000 for k, key in enumerate(_APPROVALS)},
        }
        for index in range(classes)
    ]
    nested: dict[str, dict[str, list[dict[str, Any]]]] = {}
    combos = (
        (approval, install, f"Patch Type {kind:04d}")
        for kind in range(installs)
        for approval in _APPROVAL_NAMES
        for install in _INSTALL_NAMES
    )
    for number, (approval, install, patch_type) in zip(range(installs), combos, strict=False):
        nested.setdefault(approval, {}).setdefault(install, []).append(
            {"patchType": patch_type, "count": (number * 13) % 900}
        )
    patch_summaries = [
        {
            "approvalStatus": approval,
            "patchInstallStatusCounts": [
                {"patchInstallStatus": install, "patchTypeSummaries": types} for install, types in statuses.items()
            ],
        }
        for approval, statuses in nested.items()
    ]
    return {"deviceClassSummaries": summaries, "patchSummaryList": patch_summaries}


def report_data(series: int) -> ReportData:
    """`vendor_data(series)` parsed the way the exporter parses a COMPLETED report (a ReportData)."""
    from exporter.report import parse_data

    data = parse_data(vendor_data(series))
    assert len(data.approvals) + len(data.installs) == series, "synthetic data must give exactly that many series"
    return data


def fill_store(store: Store, series: int, name: str = "all") -> None:
    """Put one successful run of `series` report series into an exporter Store."""
    from exporter.reports import ReportResult

    data = report_data(series)
    now = time.time()
    updated = store.update(
        name,
        lambda state: replace(
            state, result=ReportResult(data), last_success_time=now, last_duration=42.0, last_run_success=True,
            last_run_time=now,
            runs_total=state.runs_total + 1,
        ),
        fingerprint=store.snapshot[name].fingerprint,
    )
    assert updated


def _status_kib(field: str, pid: int | None) -> int:
    status = Path(f"/proc/{pid if pid is not None else 'self'}/status").read_text(encoding="ascii")
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc status")


def rss_kib(pid: int | None = None) -> int:
    """VmRSS of a process (this one by default) in KiB, from /proc."""
    return _status_kib("VmRSS", pid)


def peak_kib(pid: int | None = None) -> int:
    """VmHWM, the peak resident set, of a process (this one by default) in KiB, from /proc."""
    return _status_kib("VmHWM", pid)


# The exporter's third-party libraries: a fresh interpreter with these imported is the memory baseline.
LIBRARIES = "import prometheus_client, requests, yaml, apscheduler.schedulers.background, bcrypt"


def baseline_kib(measure: str) -> int:
    """`measure` (`rss_kib` or `peak_kib`) of a fresh interpreter that imported LIBRARIES and nothing else."""
    code = f"{LIBRARIES}\nfrom benchmarks.common import {measure}\nprint({measure}())"
    output = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    return int(output.stdout.strip())


def free_port() -> int:
    """A free TCP port on HOST."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kib = int(Path("/proc/meminfo").read_text(encoding="ascii").split()[1])
        memory = f", {total_kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import prometheus_client

    version = getattr(prometheus_client, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("prometheus-client")
    return (
        f"{model}, {os.cpu_count()} CPUs{memory}, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}, prometheus_client {version}"
    )


def pytest_running() -> bool:
    """Whether a test run shares the CPUs with us (the figures would be disturbed)."""
    try:
        found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True, check=False)
    except OSError:
        return False
    return any(int(pid) != os.getpid() for pid in found.stdout.split())


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(pct * 10) - 1]


# --- server subprocesses -------------------------------------------------------------------------------


def terminate(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """`python -m benchmarks.serve KIND ...` in its own process; it prints `PORT n` once listening and
    exits when its stdin closes."""

    def __init__(self, kind: str, *args: str, timeout: float = 60.0) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [PYTHON, "-m", "benchmarks.serve", kind, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True,
        )
        assert self.process.stdout is not None
        line = _readline(self.process.stdout, timeout)
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def command(self, line: str) -> str:
        """A command to a `simulator` server (see benchmarks/serve.py); its one-line answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return _readline(self.process.stdout, 10.0)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(stream: IO[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


# --- load generator --------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    body_bytes: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def p(self, pct: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies, pct) * 1000


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def load(
    port: int,
    path: str = "/metrics",
    *,
    clients: int = 8,
    max_requests: int = 5000,
    max_seconds: float = 5.0,
    gzipped: bool = False,
) -> LoadResult:
    """`clients` threads, each on its own keep-alive connection (re-opened when the server closes it),
    GET `path` until `max_requests` are done in all or `max_seconds` have passed."""
    headers = {"Accept-Encoding": "gzip"} if gzipped else {"Accept-Encoding": "identity"}
    lock = threading.Lock()
    issued = [0]
    result = LoadResult()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client() -> None:
        latencies: list[float] = []
        errors = 0
        received = 0
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        start.wait()
        while True:
            with lock:
                if issued[0] >= max_requests or time.perf_counter() >= deadline[0]:
                    break
                issued[0] += 1
            began = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException):
                connection.close()
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)
            if response.status != 200 or not body or gzipped != (response.getheader("Content-Encoding") == "gzip"):
                errors += 1
            received += len(body)
        connection.close()
        with lock:
            result.latencies.extend(latencies)
            result.errors += errors
            result.body_bytes += received

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + max_seconds
    start.wait()
    for thread in threads:
        thread.join(max_seconds + 60)
    result.seconds = time.perf_counter() - began
    result.requests = len(result.latencies)
    return result


# --- results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One line of the summary: our value, the stock baseline's from the same run, and the goal."""

    goal: str
    measure: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    met: bool

    def row(self) -> str:
        verdict = "yes" if self.met else "NO"
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x" if self.ratio < 10 else f"{self.ratio:.0f}x"
        cells = (self.goal, self.measure, self.ours, self.baseline, ratio, self.target, verdict)
        return "| " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| goal | measure | ours | stock baseline | ratio | target | met |\n"
    "|---|---|---|---|---|---|---|"
)


def print_figures(figures: list[Figure]) -> None:
    print()
    print(TABLE_HEADER)
    for figure in figures:
        print(figure.row())
    sys.stdout.flush()


def finish(figures: list[Figure], json_path: str | None) -> None:
    """A benchmark's end: the summary table, and the figures as JSON for run_all when it asks."""
    print_figures(figures)
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(figure) for figure in figures]), encoding="utf-8")


def load_figures(json_path: Path) -> list[Figure]:
    return [Figure(**raw) for raw in json.loads(json_path.read_text(encoding="utf-8"))]
