"""Ingest memory: peak RSS (VmHWM) of a fresh process that runs the real Exporter once against the simulator
(its own process), writes the state file and renders /metrics, for

  at-caps   a valid report at the default caps: max_series (5,000) series, its device-class names padded so
            the body is just under max_response_size (4 MiB): every byte ends up in a label value;
  refused   the densest report that fits in max_response_size (tens of thousands of device classes), refused
            as invalid_response for having more than max_series series;
  old-caps  the same dense shape at --old-mb MB (9 by default) with the old limits (50 MiB, no series cap):
            what the caps prevent;

next to the baseline: a fresh interpreter that imported the same libraries. Each in its own process.

    .venv/bin/python -m benchmarks.bench_ingest [--old-mb 9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PYTHON,
    REPO,
    SIMULATOR_JWT,
    Figure,
    ServerProcess,
    baseline_kib,
    finish,
    peak_kib,
    vendor_data,
)

TARGET_MIB = 150e6 / 2**20  # "under 150 MB", read as 150·10⁶ bytes (143.1 MiB), the stricter reading
_ENVELOPE = 200  # bytes of the poll answer around `data`


def at_caps_data(series: int, size: int) -> dict[str, Any]:
    """`vendor_data(series)` with its device-class names padded so the JSON is just under `size` bytes."""
    data = vendor_data(series)
    summaries = data["deviceClassSummaries"]
    spare = size - _ENVELOPE - len(json.dumps(data))
    pad = max(0, spare // len(summaries) - 1)
    for index, summary in enumerate(summaries):
        summary["deviceClass"] = f"{summary['deviceClass']} {'x' * pad}"[: pad + 30] + f" {index:05d}"
    while len(json.dumps(data)) > size - _ENVELOPE:
        for summary in summaries:
            summary["deviceClass"] = summary["deviceClass"][:-8] + summary["deviceClass"][-6:]
    return data


def dense_data(size: int) -> dict[str, Any]:
    """As many device classes as fit in `size` bytes (~95 bytes each, like the adversarial test's report)."""
    one = {"deviceClass": "Class 0000000", "approvalStatusCounts": {"declined": 10, "noApproval": 20}}
    count = (size - _ENVELOPE) // (len(json.dumps(one)) + 2)
    return {"deviceClassSummaries": [
        {"deviceClass": f"Class {n:07d}", "approvalStatusCounts": {"declined": 10 + n % 89, "noApproval": 10 + n % 83}}
        for n in range(count)
    ]}


def child(url: str, state_dir: str, old_caps: bool) -> None:
    """The measured process: one run of the real exporter with the default caps (or the old ones)."""
    from exporter.app import Exporter
    from exporter.config import Config, NCentralSettings
    from exporter.reports import ReportSettings

    start = peak_kib()
    caps: dict[str, Any] = {"max_response_size": 50 * 2**20, "max_series": 10**7} if old_caps else {}
    config = Config(
        ncentral=NCentralSettings(url=url, token=SIMULATOR_JWT, request_timeout=30.0, retry_backoff=0.01, **caps),
        collections=(ReportSettings(name="all", poll_interval=0.001, poll_max_interval=0.005, timeout=120.0),),
        storage_path=str(Path(state_dir) / "state.json"),
    )
    app = Exporter(config)
    began = time.perf_counter()
    ok = app.run("all")
    plain = app.exposition.render_parts()[1]  # what the web server writes: no joined copy
    gzipped = app.exposition.render_parts(gzipped=True)[1]
    elapsed = time.perf_counter() - began
    state = app.store.snapshot["all"]
    app.shutdown()
    state_size = (Path(state_dir) / "state.json").stat().st_size
    print(json.dumps({
        "ok": ok, "reason": state.last_reason, "error": (state.last_error or "")[:120], "start_kib": start,
        "peak_kib": peak_kib(), "metrics_bytes": len(plain), "gzip_bytes": len(gzipped), "state_bytes": state_size,
        "seconds": elapsed,
    }))


def measure(data: dict[str, Any], old_caps: bool) -> dict[str, Any]:
    """Serve `data` from a simulator process and ingest it in a fresh child process; the child's figures."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        data_file = Path(tmp) / "data.json"
        data_file.write_text(json.dumps(data), encoding="utf-8")
        del data
        body = data_file.stat().st_size + _ENVELOPE
        with ServerProcess("simulator", "--data-file", str(data_file)) as sim:
            command = [PYTHON, "-m", "benchmarks.bench_ingest", "--child", sim.url, "--state-dir", tmp]
            output = subprocess.run([*command, *(["--old-caps"] if old_caps else [])], capture_output=True,
                                    text=True, check=True, cwd=REPO, timeout=600)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    result["body_bytes"] = body
    return result


def run(old_mb: float, json_path: str | None) -> None:
    from exporter.config import NCentralSettings

    defaults = NCentralSettings(url="http://unused", token="unused")  # noqa: S106 - not a secret
    cap, max_series = defaults.max_response_size, defaults.max_series
    baseline = baseline_kib("peak_kib") / 1024
    rows: dict[str, dict[str, Any]] = {
        "at-caps": measure(at_caps_data(max_series, cap), old_caps=False),
        "refused": measure(dense_data(cap), old_caps=False),
    }
    if old_mb > 0:
        rows["old-caps"] = measure(dense_data(int(old_mb * 10**6)), old_caps=True)
    print(f"\n## Peak RSS ingesting one report (defaults: max_response_size {cap / 2**20:g} MiB, "
          f"max_series {max_series})")
    print(f"{'report':9} {'body MB':>8} {'outcome':>17} {'peak MiB':>9} {'/metrics MB':>12} {'state MB':>9} "
          f"{'seconds':>8}")
    for name, row in rows.items():
        outcome = "success" if row["ok"] else str(row["reason"])
        print(f"{name:9} {row['body_bytes'] / 1e6:8.2f} {outcome:>17} {row['peak_kib'] / 1024:9.1f} "
              f"{row['metrics_bytes'] / 1e6:12.2f} {row['state_bytes'] / 1e6:9.2f} {row['seconds']:8.2f}")
    print(f"{'baseline':9} {'':8} {'':>17} {baseline:9.1f}   (fresh interpreter with the same libraries imported)")
    for name, row in rows.items():
        if not row["ok"]:
            print(f"{name}: {row['error']}")
    at_caps, refused = rows["at-caps"], rows["refused"]
    figures = [
        Figure("ingest memory", f"peak RSS, valid report at the caps ({at_caps['body_bytes'] / 1e6:.1f} MB, "
               f"{max_series} series)", f"{at_caps['peak_kib'] / 1024:.1f} MiB", f"{baseline:.1f} MiB (libraries only)",
               at_caps["peak_kib"] / 1024 / baseline, "< 150 MB (143.1 MiB)",
               bool(at_caps["ok"]) and at_caps["peak_kib"] / 1024 < TARGET_MIB),
        Figure("ingest memory", f"peak RSS, densest report filling the cap, refused "
               f"({refused['body_bytes'] / 1e6:.1f} MB)", f"{refused['peak_kib'] / 1024:.1f} MiB",
               f"{baseline:.1f} MiB (libraries only)", refused["peak_kib"] / 1024 / baseline, "< 150 MB (143.1 MiB)",
               refused["reason"] == "invalid_response" and refused["peak_kib"] / 1024 < TARGET_MIB),
    ]
    if "old-caps" in rows:
        old = rows["old-caps"]
        figures.append(Figure(
            "ingest memory", f"peak RSS, {old['body_bytes'] / 1e6:.1f} MB report under the old caps (50 MiB, no "
            "series cap)", f"{old['peak_kib'] / 1024:.1f} MiB", f"{baseline:.1f} MiB (libraries only)",
            old["peak_kib"] / 1024 / baseline, "(for comparison)", True,
        ))
    finish(figures, json_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-mb", type=float, default=9.0, help="size of the old-caps report in MB (0: skip)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--old-caps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.state_dir, args.old_caps)
        return
    run(args.old_mb, args.json)


if __name__ == "__main__":
    main()
