"""Deployment artefacts: Dockerfile, .dockerignore, docker-compose demo, Kubernetes manifests, systemd unit.

No Docker engine runs here, so the image is proven by mirroring it: the build stage's COPY and RUN steps
are replayed into a scratch "root filesystem" under tmp_path (a fresh virtual environment, `pip install .`
from a copy of the build context filtered by .dockerignore), then the image's ENTRYPOINT + CMD is started
(with --demo and a free loopback port instead of the config file) and the HEALTHCHECK's own command must
report healthy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
UNIT_FILE = DEPLOY / "ncentral-patch-exporter.service"

STATE_DIR = "/var/lib/ncentral-patch-exporter"
CONFIG_PATH = "/etc/ncentral-patch-exporter/config.yaml"
PORT = 10120
SCRIPT = "ncentral-patch-exporter"

# --- small helpers ----------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET on a loopback URL; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback test URLs
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def flag_names(args: list[str]) -> list[str]:
    """`--a=b`, `--c d` -> ['--a', '--c']."""
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def flag_value(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return None


def without_flag(args: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


# --- Dockerfile parsing -----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.args)
        assert isinstance(parsed, list), self.args
        assert all(isinstance(item, str) for item in parsed), self.args
        return parsed


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in stage {self.name or self.base}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue  # comments are dropped, also inside continuations, as Docker does
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def split_options(args: str) -> tuple[dict[str, str], str]:
    """`--from=builder a b` -> ({'from': 'builder'}, 'a b')."""
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    return options, rest


def env_pairs(ins: Instruction) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in shlex.split(ins.args):
        key, sep, value = word.partition("=")
        assert sep, f"ENV must use KEY=VALUE form: {ins.args}"
        pairs[key] = value
    return pairs


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    ins = stage.last("HEALTHCHECK")
    before, sep, command = ins.args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {ins.args}"
    options, rest = split_options(before.strip())
    assert not rest
    return options, Instruction("CMD", command.strip()).exec_form()


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def final_command(stage: Stage) -> tuple[list[str], list[str]]:
    return stage.last("ENTRYPOINT").exec_form(), stage.last("CMD").exec_form()


# --- .dockerignore ----------------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", index)
            body = pattern[index + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            index = end
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/")
        rules.append((negate, _ignore_regex(pattern)))
    return rules


def is_ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's semantics: a pattern matches a path or any of its parents; the last matching rule wins."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def context_files(src: str, rules: list[tuple[bool, re.Pattern[str]]]) -> Iterator[tuple[Path, str]]:
    """The files of one COPY source as the build context holds them: (absolute path, path below src)."""
    base = ROOT / src
    assert base.exists(), f"COPY source {src} missing from the repository"
    if base.is_file():
        if not is_ignored(base.relative_to(ROOT).as_posix(), rules):
            yield base, base.name
        return
    for path in sorted(base.rglob("*")):
        if path.is_file() and not is_ignored(path.relative_to(ROOT).as_posix(), rules):
            yield path, path.relative_to(base).as_posix()


# --- Dockerfile: static facts -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_official_slim_python(stages: list[Stage]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == "python:3.12-slim"
    assert final.base == "python:3.12-slim"
    venv = shlex.split(builder.all("RUN")[0].args)
    assert venv[:3] == ["python", "-m", "venv"], "the build stage starts by creating the virtual environment"
    copies = [split_options(ins.args) for ins in final.all("COPY")]
    assert copies == [({"from": "builder"}, f"{venv[3]} {venv[3]}")], "only the venv is copied into the image"
    assert any(f"{venv[3]}/bin" in value for value in env_pairs(final.last("ENV")).values()), "venv on PATH"
    install = [shlex.split(ins.args) for ins in builder.all("RUN") if "pip" in ins.args]
    assert [f"{venv[3]}/bin/pip", "install", "."] in install


def test_dockerfile_runs_as_fixed_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    user, _, group = final.last("USER").args.partition(":")
    assert user not in {"root", "0", ""}
    assert user == "10001", "a fixed numeric uid, so Kubernetes' runAsNonRoot can verify it"
    assert group in {"", "10001"}
    # The user is created with that uid, and owns the storage volume.
    setup = " ".join(ins.args for ins in final.all("RUN"))
    assert "--uid 10001" in setup
    assert f"chown exporter:exporter {STATE_DIR}" in setup


def test_dockerfile_exposes_port_volume_and_command(stages: list[Stage]) -> None:
    final = stages[-1]
    assert str(PORT) in final.last("EXPOSE").args.split()
    volumes = final.last("VOLUME").exec_form()
    assert volumes == [STATE_DIR]
    entrypoint, cmd = final_command(final)
    assert entrypoint == [SCRIPT]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert SCRIPT in scripts, "ENTRYPOINT is the project's console script"
    assert flag_value(cmd, "--config.file") == CONFIG_PATH
    assert flag_value(cmd, "--storage.path") == f"{STATE_DIR}/state.json"
    assert flag_value(cmd, "--web.listen-address") == f":{PORT}"
    assert "--demo" not in cmd


def test_dockerfile_healthcheck_uses_python_stdlib(stages: list[Stage]) -> None:
    final = stages[-1]
    options, command = healthcheck(final)
    assert {"interval", "timeout", "retries"} <= options.keys()
    assert command[:2] == ["python", "-c"]
    assert len(command) == 3
    snippet = command[2]
    assert "urllib.request" in snippet
    assert "/-/healthy" in snippet
    assert f"127.0.0.1:{PORT}/" in snippet, "the default URL matches EXPOSE and --web.listen-address"
    joined = " ".join(ins.args for stage in stages for ins in stage.instructions)
    assert "curl" not in joined
    assert "wget" not in joined


def test_dockerfile_bakes_in_no_secret(stages: list[Stage]) -> None:
    secretish = re.compile(r"TOKEN|SECRET|PASSW|JWT|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)
    for stage in stages:
        for ins in stage.all("ENV"):
            for key in env_pairs(ins):
                assert not secretish.search(key), f"secret-looking ENV {key}"
        for ins in stage.all("ARG"):
            assert not secretish.search(ins.args), f"secret-looking ARG {ins.args}"
        for ins in stage.all("COPY") + stage.all("ADD"):
            assert not secretish.search(ins.args), f"secret-looking file copied: {ins.args}"
    # The final image copies nothing from the build context (config and token come at run time).
    assert all(split_options(ins.args)[0].get("from") for ins in stages[-1].all("COPY"))
    assert not stages[-1].all("ADD")


def test_dockerignore_keeps_only_build_inputs(stages: list[Stage]) -> None:
    rules = dockerignore_rules()
    needed: list[str] = []
    for ins in stages[0].all("COPY"):
        options, rest = split_options(ins.args)
        assert "from" not in options
        needed.extend(shlex.split(rest)[:-1])
    for src in needed:
        files = list(context_files(src, rules))
        assert files, f"{src} is excluded from the build context by .dockerignore"
    assert not is_ignored("exporter/__init__.py", rules)
    assert not is_ignored("exporter/sub/module.py", rules)
    for excluded in (
        ".git/config", ".venv/bin/python", "tests/test_deploy.py", "config.yml", "config.yaml",
        "exporter/__pycache__/cli.cpython-312.pyc", "deploy/docker-compose.yml", "token", ".env",
        "state.json", "Dockerfile",
    ):
        assert is_ignored(excluded, rules), f"{excluded} would be sent to the Docker build"


# --- the image's steps, mirrored --------------------------------------------------------------------


class RootFS:
    """Container paths mapped below a scratch directory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, container_path: str) -> Path:
        assert container_path.startswith("/"), container_path
        return self.base / container_path.lstrip("/")

    def reroot_word(self, word: str) -> str:
        return str(self.path(word)) if word.startswith("/") else word


def replay_build_stage(stage: Stage, rootfs: RootFS, log: Path) -> None:
    """Perform the stage's ENV, WORKDIR, COPY and RUN steps with container paths below `rootfs`."""
    rules = dockerignore_rules()
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    workdir = rootfs.path("/")
    workdir.mkdir(parents=True, exist_ok=True)
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            pairs = env_pairs(ins)
            # The pip download cache only saves time here; it does not change what gets installed.
            pairs.pop("PIP_NO_CACHE_DIR", None)
            env.update(pairs)
        elif ins.keyword == "WORKDIR":
            workdir = rootfs.path(ins.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            options, rest = split_options(ins.args)
            assert not options, f"unexpected COPY options in the build stage: {ins.args}"
            *sources, dest = shlex.split(rest)
            target = rootfs.path(dest) if dest.startswith("/") else workdir / dest
            for src in sources:
                for path, below in context_files(src, rules):
                    copied = target / below if dest.endswith("/") or len(sources) > 1 else target
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copied)
        elif ins.keyword == "RUN":
            for part in ins.args.split("&&"):
                words = [rootfs.reroot_word(word) for word in shlex.split(part)]
                if words[0] == "python":
                    words[0] = sys.executable
                with log.open("a") as out:
                    out.write(f"$ {shlex.join(words)}\n")
                    out.flush()
                    result = subprocess.run(
                        words, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=480,
                        check=False,
                    )
                assert result.returncode == 0, f"{shlex.join(words)} failed:\n{log.read_text()[-4000:]}"
        else:
            raise AssertionError(f"the test cannot mirror {ins.keyword} in the build stage; extend it")


def final_env(stage: Stage, rootfs: RootFS) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    for ins in stage.all("ENV"):
        for key, value in env_pairs(ins).items():
            expanded = value.replace("${PATH}", os.environ["PATH"]).replace("$PATH", os.environ["PATH"])
            if key == "PATH":
                entries = expanded.split(os.pathsep)
                expanded = os.pathsep.join(
                    str(rootfs.path(entry)) if entry.startswith("/") and rootfs.path(entry).is_dir() else entry
                    for entry in entries
                )
            env[key] = expanded
    return env


def test_image_steps_install_and_healthcheck(stages: list[Stage], tmp_path: Path) -> None:
    builder, final = stages
    rootfs = RootFS(tmp_path / "rootfs")
    replay_build_stage(builder, rootfs, tmp_path / "build.log")
    # COPY --from=builder: the same container paths, so the same rerooted directories.
    for ins in final.all("COPY"):
        _, rest = split_options(ins.args)
        src, dest = shlex.split(rest)
        assert src == dest
        assert rootfs.path(src).is_dir()
    for ins in final.all("VOLUME"):
        for volume in ins.exec_form():
            rootfs.path(volume).mkdir(parents=True, exist_ok=True)
    env = final_env(final, rootfs)
    workdir = rootfs.path(final.last("WORKDIR").args)

    entrypoint, cmd = final_command(final)
    program = shutil.which(entrypoint[0], path=env["PATH"])
    assert program is not None
    assert Path(program).is_relative_to(rootfs.base), program
    python = shutil.which("python", path=env["PATH"])
    assert python is not None
    assert Path(python).is_relative_to(rootfs.base), python

    # The installed package is a real install in the venv, not the source tree.
    where = subprocess.run(
        [python, "-c", "import exporter; print(exporter.__file__)"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(rootfs.base), where
    assert "site-packages" in Path(where).parts, where

    port = free_port()
    args = without_flag(cmd, "--config.file")
    args = without_flag(args, "--web.listen-address")
    storage = flag_value(args, "--storage.path")
    assert storage is not None
    args = [*without_flag(args, "--storage.path"), f"--storage.path={rootfs.path(storage)}"]
    args += ["--demo", f"--web.listen-address=127.0.0.1:{port}"]

    _, check = healthcheck(final)
    check_argv = [python, *check[1:]]
    # The check's own default URL, only moved to the test's port (HEALTHCHECK_URL is its documented override).
    default_url = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"\s]*)", check[2])
    assert default_url is not None, check[2]
    assert default_url.group(1) == str(PORT)
    health_url = f"http://127.0.0.1:{port}{default_url.group(2)}"

    def healthcheck_rc(url: str) -> int:
        return subprocess.run(
            check_argv, env={**env, "HEALTHCHECK_URL": url}, cwd=workdir, capture_output=True, timeout=30,
            check=False,
        ).returncode

    log = tmp_path / "exporter.log"
    with log.open("w") as out:
        argv = [program, *entrypoint[1:], *args]
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=out)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited with {proc.returncode}")
        return healthcheck_rc(health_url) == 0

    try:
        try:
            wait_for(healthy, timeout=30, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"HEALTHCHECK never passed: {exc}\n{log.read_text()[-4000:]}") from None
        status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert status == 200
        assert b"ncentral_patch_exporter_build_info" in body
        # The demo report completes, and its result is stored in the image's VOLUME.
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, timeout=30, interval=0.2)
        assert rootfs.path(storage).is_file()
        assert rootfs.path(storage).parent == rootfs.path(final.last("VOLUME").exec_form()[0])
        # And the check really fails when nothing answers.
        assert healthcheck_rc(health_url.replace(f":{port}/", f":{free_port()}/")) != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- every shipped command line uses flags the exporter knows ---------------------------------------


def shipped_command_lines(stages: list[Stage]) -> dict[str, list[str]]:
    _, cmd = final_command(stages[-1])
    compose = load_yaml(COMPOSE_FILE)
    deployment = next(doc for doc in load_yaml_docs(K8S / "deployment.yaml") if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {
        "Dockerfile CMD": cmd,
        "docker-compose exporter command": list(compose["services"]["exporter"]["command"]),
        "Kubernetes args": list(container["args"]),
        "systemd ExecStart": shlex.split(unit_values(UNIT_FILE)["Service"]["ExecStart"][0])[1:],
    }


def test_shipped_command_lines_use_known_flags(stages: list[Stage]) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout
    for where, args in shipped_command_lines(stages).items():
        for name in flag_names(args):
            assert re.search(rf"{re.escape(name)}\b", help_text), f"{where}: unknown flag {name}"


# --- docker compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path resolved against deploy/, container path) of every bind mount of a service."""
    mounts: list[tuple[Path, str]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        if source.startswith((".", "/")):
            mounts.append(((DEPLOY / source).resolve(), target))
    return mounts


def materialise(service: dict[str, Any], base: Path) -> RootFS:
    """Lay a service's bind mounts out below `base` as the container would see them."""
    rootfs = RootFS(base)
    for source, target in bind_mounts(service):
        dest = rootfs.path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy2(source, dest)
    return rootfs


def test_compose_mounts_exist(compose: dict[str, Any]) -> None:
    assert {"exporter", "prometheus", "alertmanager", "grafana"} <= compose["services"].keys()
    count = 0
    for name, service in compose["services"].items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: mounted {source} does not exist"
            assert source.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
            assert target.startswith("/")
            count += 1
    assert count >= 5


def test_compose_exporter_builds_the_image_in_demo_mode(compose: dict[str, Any]) -> None:
    exporter = compose["services"]["exporter"]
    build = exporter["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (DEPLOY / context).resolve() == ROOT
    assert (ROOT / "Dockerfile").is_file()
    command = exporter["command"]
    assert command == ["--demo", f"--web.listen-address=:{PORT}"]
    assert any(str(port).endswith(f"{PORT}:{PORT}") for port in exporter.get("ports", []))


def test_compose_prometheus_config_scrapes_exporter_and_loads_rules(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    service = compose["services"]["prometheus"]
    assert str(service["image"]).startswith("prom/prometheus:")
    rootfs = materialise(service, tmp_path)
    command = [str(arg) for arg in service.get("command", [])]
    config_path = flag_value(command, "--config.file") or "/etc/prometheus/prometheus.yml"
    config_file = rootfs.path(config_path)
    assert config_file.is_file(), "the Prometheus config is mounted"
    # promtool resolves rule_files relative to the config, as Prometheus does inside the container.
    result = subprocess.run(
        ["promtool", "check", "config", str(config_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(config_file)
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    exporter = compose["services"]["exporter"]
    aliases = exporter.get("networks", {}).get("default", {}).get("aliases", [])
    assert {f"{host}:{PORT}" for host in ["exporter", *aliases]} & set(targets), targets
    alertmanagers = [
        target
        for am in config["alerting"]["alertmanagers"]
        for static in am["static_configs"]
        for target in static["targets"]
    ]
    assert alertmanagers == ["alertmanager:9093"]
    # The shipped alert rules are what gets loaded.
    rule_files = [config_file.parent / pattern for pattern in config["rule_files"]]
    loaded = [path for pattern in rule_files for path in pattern.parent.glob(pattern.name)]
    shipped = load_yaml(ROOT / "prometheus" / "alerts.yml")
    assert any(load_yaml(path) == shipped for path in loaded)


def test_compose_alertmanager_config_is_valid(compose: dict[str, Any], tmp_path: Path) -> None:
    service = compose["services"]["alertmanager"]
    assert str(service["image"]).startswith("prom/alertmanager:")
    rootfs = materialise(service, tmp_path)
    command = [str(arg) for arg in service.get("command", [])]
    config_path = flag_value(command, "--config.file") or "/etc/alertmanager/alertmanager.yml"
    result = subprocess.run(
        ["amtool", "check-config", str(rootfs.path(config_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def test_compose_grafana_provisioning_needs_no_clicks(compose: dict[str, Any], tmp_path: Path) -> None:
    service = compose["services"]["grafana"]
    assert str(service["image"]).startswith("grafana/grafana")
    mounts = {source: target for source, target in bind_mounts(service)}
    assert mounts.get(ROOT / "grafana" / "provisioning") == "/etc/grafana/provisioning"
    dashboards_target = mounts.get(ROOT / "grafana" / "dashboards")
    assert dashboards_target is not None, "the shipped dashboards are mounted"
    rootfs = materialise(service, tmp_path)

    # The dashboard provider reads exactly the directory the dashboards are mounted at.
    providers = [
        provider
        for path in sorted(rootfs.path("/etc/grafana/provisioning/dashboards").glob("*.y*ml"))
        for provider in load_yaml(path).get("providers", [])
    ]
    assert providers
    provider_paths = {str(provider["options"]["path"]).rstrip("/") for provider in providers}
    assert dashboards_target.rstrip("/") in provider_paths
    dashboards = list(rootfs.path(dashboards_target).glob("*.json"))
    assert dashboards

    # The Prometheus datasource points at the compose service.
    datasources = [
        source
        for path in sorted(rootfs.path("/etc/grafana/provisioning/datasources").glob("*.y*ml"))
        for source in load_yaml(path).get("datasources", [])
    ]
    prometheus = [source for source in datasources if source["type"] == "prometheus"]
    assert prometheus
    ports = {str(port) for port in compose["services"]["prometheus"].get("expose", [])} | {"9090"}
    assert any(
        re.fullmatch(rf"http://prometheus:({'|'.join(ports)})/?", str(source["url"])) for source in prometheus
    ), [source["url"] for source in prometheus]

    # Anonymous viewers land on the dashboard.
    env = compose_environment(service)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is not None
    assert rootfs.path(home).is_file(), home


# --- Kubernetes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml_docs(path):
            assert doc["kind"] not in by_kind, f"two {doc['kind']} manifests"
            by_kind[doc["kind"]] = doc
    return by_kind


def test_kubernetes_manifests_complete(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == {
        "ConfigMap", "Deployment", "PrometheusRule", "Secret", "Service", "ServiceMonitor",
    }
    for doc in manifests.values():
        assert doc["metadata"]["name"] == "ncentral-patch-exporter"
        assert "namespace" not in doc["metadata"], "the namespace is chosen at apply time"
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in resources, "the placeholder Secret is never applied by default"
    assert {path.name for path in K8S.glob("*.yaml")} - set(resources) == {
        "kustomization.yaml", "secret.example.yaml",
    }


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_kubernetes_deployment(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert deployment["spec"]["replicas"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]

    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 10001
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]

    args = container["args"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    storage = flag_value(args, "--storage.path")
    assert storage == f"{STATE_DIR}/state.json"
    storage_volume = volumes[mounts[STATE_DIR]["name"]]
    assert "emptyDir" in storage_volume or "persistentVolumeClaim" in storage_volume
    config = flag_value(args, "--config.file")
    assert config == CONFIG_PATH
    config_mount = mounts[str(Path(CONFIG_PATH).parent)]
    assert config_mount["readOnly"] is True
    config_map = manifests["ConfigMap"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert Path(CONFIG_PATH).name in config_map["data"]

    env = {item["name"]: item for item in container["env"]}
    token = env["NCENTRAL_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = manifests["Secret"]
    assert token["name"] == secret["metadata"]["name"]
    assert token["key"] in secret["stringData"]


def test_kubernetes_secret_is_a_placeholder(manifests: dict[str, dict[str, Any]]) -> None:
    secret = manifests["Secret"]
    values = list(secret["stringData"].values())
    assert values == ["REPLACE-WITH-YOUR-N-CENTRAL-API-TOKEN"]
    assert "data" not in secret
    assert "EXAMPLE ONLY" in (K8S / "secret.example.yaml").read_text(encoding="utf-8")


def test_kubernetes_configmap_config_passes_check_config(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    text = manifests["ConfigMap"]["data"][Path(CONFIG_PATH).name]
    config = yaml.safe_load(text)
    assert "api_token" not in config["ncentral"]
    assert "api_token_file" not in config["ncentral"]
    assert config["storage"]["path"] == f"{STATE_DIR}/state.json"
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    # The token comes from the environment, as the Deployment provides it; the state directory is the
    # pod's volume, absent here, so the storage check runs on a directory that exists.
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", f"--config.file={path}",
         f"--storage.path={tmp_path / 'state.json'}"],
        cwd=ROOT, env={**os.environ, "NCENTRAL_API_TOKEN": "placeholder-jwt"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_service_and_servicemonitor(manifests: dict[str, dict[str, Any]]) -> None:
    service = manifests["Service"]
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"},
    ]
    monitor = manifests["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoints = monitor["spec"]["endpoints"]
    assert [endpoint["port"] for endpoint in endpoints] == ["metrics"]
    assert endpoints[0]["path"] == "/metrics"
    # prometheus-operator names the scrape job after the Service: the job the shipped alerts expect.
    assert "jobLabel" not in monitor["spec"]
    alerts = (ROOT / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    assert f'up{{job="{service["metadata"]["name"]}"}}' in alerts


def test_kubernetes_prometheusrule_matches_shipped_alerts(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    rule = manifests["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = load_yaml(ROOT / "prometheus" / "alerts.yml")
    assert set(shipped) == {"groups"}
    groups = rule["spec"]["groups"]
    assert [group["name"] for group in groups] == [group["name"] for group in shipped["groups"]]
    for ours, theirs in zip(groups, shipped["groups"], strict=True):
        assert ours.keys() == theirs.keys(), ours["name"]
        for key in ours:
            if key != "rules":
                assert ours[key] == theirs[key], (ours["name"], key)
        assert len(ours["rules"]) == len(theirs["rules"]), ours["name"]
        for mine, shipped_rule in zip(ours["rules"], theirs["rules"], strict=True):
            name = shipped_rule.get("alert") or shipped_rule.get("record")
            assert mine.keys() == shipped_rule.keys(), name
            for key in mine:
                assert mine[key] == shipped_rule[key], (name, key)
    # And the rules themselves load in Prometheus.
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        ["promtool", "check", "rules", str(extracted)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- systemd ----------------------------------------------------------------------------------------


def unit_values(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (keys may repeat), with line continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, line
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_settings() -> None:
    unit = unit_values(UNIT_FILE)
    service = unit["Service"]

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, key
        return service[key][0]

    exec_start = shlex.split(one("ExecStart"))
    assert exec_start[0].startswith("/")
    assert exec_start[0].endswith(f"/bin/{SCRIPT}")
    args = exec_start[1:]
    assert flag_value(args, "--config.file") == CONFIG_PATH
    state = one("StateDirectory")
    assert flag_value(args, "--storage.path") == f"/var/lib/{state}/state.json"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    assert one("DynamicUser") == "yes"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "yes"
    assert one("CapabilityBoundingSet") == ""
    # The token: a credential, and the documented config path is where systemd puts it.
    credential, _, source = one("LoadCredential").partition(":")
    assert source.startswith("/etc/ncentral-patch-exporter/")
    text = UNIT_FILE.read_text(encoding="utf-8")
    assert f"api_token_file: /run/credentials/{UNIT_FILE.name}/{credential}" in text
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    # systemd-analyze checks that ExecStart is executable: point it at a stand-in for the installed script.
    stand_in = tmp_path / SCRIPT
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    unit = tmp_path / UNIT_FILE.name
    exec_start = shlex.split(unit_values(UNIT_FILE)["Service"]["ExecStart"][0])[0]
    text = UNIT_FILE.read_text(encoding="utf-8")
    unit.write_text(text.replace(exec_start, str(stand_in)), encoding="utf-8")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0, security.stdout
