"""Windows hosts, as far as a Linux machine can tell: the real command run with what Windows lacks taken
away (no SIGHUP; no O_DIRECTORY, O_CLOEXEC, O_NOFOLLOW, O_NONBLOCK or O_NOCTTY; no fork or user ids;
POSIX-only modules such as fcntl fail to import into the exporter's own modules, while the libraries it
uses keep their own platform's branch) and what only Windows has added where the code only asks whether
it exists (SO_EXCLUSIVEADDRUSE). It must start, keep its state file, serve /metrics and reload through
POST /-/reload, the one way to reload there.

The Windows service recipe in the README is not tested here: these machines run Linux only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import REPO, child_env, config_document, free_port, wait_for, write_yaml

from exporter.simulator import Simulator
from exporter.web import _listen

# Run first in the child, before the exporter is imported.
WINDOWS_LIKE = """
import builtins, os, runpy, signal, socket, sys
for name in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM"):
    delattr(signal, name)
for name in ("O_DIRECTORY", "O_CLOEXEC", "O_NOFOLLOW", "O_NONBLOCK", "O_NOCTTY",
             "fork", "getuid", "geteuid", "getgid", "getegid", "setsid", "killpg"):
    delattr(os, name)
delattr(socket, "SO_REUSEPORT")
socket.SO_EXCLUSIVEADDRUSE = -5  # the code asks only whether it exists

POSIX_ONLY = {"fcntl", "resource", "pwd", "grp", "termios", "pty"}
real_import = builtins.__import__

def windows_import(name, globals=None, locals=None, fromlist=(), level=0):
    # The exporter's own modules may import none of these; the libraries it uses pick their own
    # platform's branch (portalocker: fcntl here, msvcrt on Windows).
    importer = (globals or {}).get("__name__") or ""
    if name.partition(".")[0] in POSIX_ONLY and (importer == "exporter" or importer.startswith("exporter.")):
        raise ModuleNotFoundError(f"No module named {name!r} (not on Windows), imported by {importer}")
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = windows_import
sys.argv = ["ncentral-patch-exporter", *sys.argv[1:]]
runpy.run_module("exporter", run_name="__main__", alter_sys=True)
"""


def test_starts_serves_and_reloads_without_posix_only_calls(sim: Simulator, tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "config.yaml", config_document(sim))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "state" / "state.json"
    state.parent.mkdir()
    log_path = tmp_path / "exporter.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", WINDOWS_LIKE, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.path={state}"],
            stdout=log, stderr=subprocess.STDOUT, env=child_env(None), cwd=REPO,
        )
    try:
        def ready() -> bool:
            assert process.poll() is None, log_path.read_text(encoding="utf-8", errors="replace")
            try:
                return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, 20)
        metrics = requests.get(f"{url}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert 'ncentral_patch_approvals{approval_status="approved_for_install"' in metrics.text
        assert state.is_file()  # written, its directory's sync left out

        write_yaml(config, config_document(sim, patch_approvals=["Declined"]))
        answer = requests.post(f"{url}/-/reload", timeout=10)
        assert answer.status_code == 200, answer.text
        samples = requests.get(f"{url}/metrics", timeout=5).text
        assert "ncentral_patch_exporter_config_last_reload_successful 1.0" in samples
        wait_for(lambda: sim.count("submit") == 2)
        assert "ncentral_patch_exporter_state_write_failures_total 0.0" in samples
    finally:
        process.terminate()
        process.wait(10)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == 0, text
    assert "Traceback" not in text
    assert 'msg="configuration reloaded"' in text and 'msg=stopped' in text


def test_the_listener_leaves_so_reuseaddr_off_where_windows_would_share_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)
    listener = _listen(("127.0.0.1", 0))
    try:
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
    finally:
        listener.close()
    monkeypatch.delattr(socket, "SO_EXCLUSIVEADDRUSE")
    listener = _listen(("127.0.0.1", 0))
    try:
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0  # POSIX: restart at once
    finally:
        listener.close()

