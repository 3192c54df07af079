"""Deployment artefacts: Dockerfile, .dockerignore, docker-compose demo, Kubernetes manifests, systemd unit.

Each artefact is checked by the tool that owns its format where one runs here: hadolint lints the
Dockerfile, `kubectl kustomize` builds the Kubernetes manifests and the Kubernetes API's own schema (the
models of the official Python client, generated from it) checks their fields, promtool and amtool check
the compose demo's configs, systemd-analyze verifies the unit. No container engine runs here, so the
image's install is replayed: the build stage's RUN steps (a fresh virtual environment, `pip install .`)
run on a copy of its COPY sources under tmp_path, then the image's ENTRYPOINT + CMD is started (with
--demo and a free loopback port instead of the config file) and the HEALTHCHECK's own command must
report healthy. The rest are checks that the files agree with each other and with the exporter.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_checks import (
    SCHEMA_MODELS,
    RootFS,
    dockerfile_stages,
    final_env,
    healthcheck_command,
    last,
    replay_build_stage,
    schema_errors,
)
from helpers import free_port, wait_for

from exporter import web

pytestmark = pytest.mark.long

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
UNIT_FILE = DEPLOY / "ncentral-patch-exporter.service"

STATE_DIR = "/var/lib/ncentral-patch-exporter"
CONFIG_PATH = "/etc/ncentral-patch-exporter/config.yaml"
PORT = 10120
SCRIPT = "ncentral-patch-exporter"
UID = 10001

# --- small helpers ----------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A command-line tool installed with the test extras (beside this Python), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


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
    return [arg for arg in args if arg != name and not arg.startswith(name + "=")]


# --- Dockerfile -------------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    # The linter really looks: an untagged base image and an unpinned, uncleaned apt install are findings.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n", encoding="utf-8")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0
    assert {"DL3006", "DL3008", "DL3009"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    """An allowlist: everything is excluded, then only the build stage's COPY sources come back."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    builder = dockerfile_stages()[0]
    copied = {source.rstrip("/").removeprefix("./") for ins in builder if ins.keyword == "COPY"
              for source in shlex.split(ins.args)[:-1]}
    assert admitted == copied
    assert {"**/__pycache__", "**/*.py[cod]"} <= set(lines)


def test_image_steps_install_and_healthcheck(tmp_path: Path) -> None:
    builder, final = dockerfile_stages()
    rootfs = RootFS(tmp_path / "rootfs")
    replay_build_stage(builder, rootfs, tmp_path / "build.log")
    # COPY --from=builder: the same container paths, so the same rerooted directories.
    for ins in final:
        if ins.keyword == "COPY":
            option, src, dest = shlex.split(ins.args)
            assert (option, src) == ("--from=builder", dest)
            assert rootfs.path(src).is_dir()
    volume = last(final, "VOLUME").exec_form()[0]
    rootfs.path(volume).mkdir(parents=True, exist_ok=True)
    env = final_env(final, rootfs)
    workdir = rootfs.path(last(final, "WORKDIR").args)

    entrypoint, cmd = last(final, "ENTRYPOINT").exec_form(), last(final, "CMD").exec_form()
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

    check = healthcheck_command(final)
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
        assert rootfs.path(storage).parent == rootfs.path(volume)
        # And the check really fails when nothing answers.
        assert healthcheck_rc(health_url.replace(f":{port}/", f":{free_port()}/")) != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- the artefacts agree with each other and with the exporter ----------------------------------------


@pytest.fixture(scope="module")
def kustomized() -> dict[str, dict[str, Any]]:
    """The Kubernetes manifests as `kubectl kustomize` builds them (what `kubectl apply -k` sends), by kind."""
    result = subprocess.run([tool("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(result.stdout):
        assert doc["kind"] not in by_kind, f"two {doc['kind']} manifests"
        by_kind[doc["kind"]] = doc
    return by_kind


def deployment_container(kustomized: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = kustomized["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_image_port_user_and_command_match_the_manifests_and_the_exporter(
    kustomized: dict[str, dict[str, Any]]
) -> None:
    final = dockerfile_stages()[-1]
    entrypoint, cmd = last(final, "ENTRYPOINT").exec_form(), last(final, "CMD").exec_form()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert entrypoint == [SCRIPT]
    assert SCRIPT in scripts, "ENTRYPOINT is the project's console script"
    assert last(final, "EXPOSE").args.split() == [str(PORT)]
    assert flag_value(cmd, "--web.listen-address") == f":{PORT}"
    assert flag_value(cmd, "--config.file") == CONFIG_PATH
    assert flag_value(cmd, "--storage.path") == f"{last(final, 'VOLUME').exec_form()[0]}/state.json"
    assert "--demo" not in cmd
    # The HEALTHCHECK asks the port the image listens on; Kubernetes runs the image as its USER.
    assert f"127.0.0.1:{PORT}/-/healthy" in healthcheck_command(final)[2]
    assert last(final, "USER").args == f"{UID}:{UID}"
    pod = kustomized["Deployment"]["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (UID, UID)
    container = deployment_container(kustomized)
    assert [port["containerPort"] for port in container["ports"]] == [PORT]
    assert flag_value(container["args"], "--web.listen-address") == f":{PORT}"


def shipped_command_lines() -> dict[str, list[str]]:
    final = dockerfile_stages()[-1]
    compose = load_yaml(COMPOSE_FILE)
    deployment = next(doc for doc in yaml.safe_load_all((K8S / "deployment.yaml").read_text(encoding="utf-8"))
                      if doc["kind"] == "Deployment")
    return {
        "Dockerfile CMD": last(final, "CMD").exec_form(),
        "docker-compose exporter command": list(compose["services"]["exporter"]["command"]),
        "Kubernetes args": list(deployment["spec"]["template"]["spec"]["containers"][0]["args"]),
        "systemd ExecStart": shlex.split(unit_values(UNIT_FILE)["Service"]["ExecStart"][0])[1:],
    }


def test_shipped_command_lines_use_known_flags() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout
    for where, args in shipped_command_lines().items():
        assert flag_names(args), where
        for name in flag_names(args):
            assert re.search(rf"{re.escape(name)}\b", help_text), f"{where}: unknown flag {name}"


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

def test_schema_errors_finds_typos_and_wrong_types() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {
        "replicas": "1", "selector": {"matchLabels": {"a": "b"}},
        "template": {"spec": {"containers": [{"name": "c", "securityContext": {"readOnlyRootFileSystem": True}}]}},
    }}
    assert schema_errors(deployment, "V1Deployment", "Deployment") == [
        "Deployment.spec.replicas: expected int, got '1'",
        "Deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: unknown field of "
        "V1SecurityContext",
    ]


def test_kubernetes_manifests_build_and_follow_the_api_schema(kustomized: dict[str, dict[str, Any]]) -> None:
    assert set(kustomized) == {"ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"}
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    assert {path.name for path in K8S.glob("*.yaml")} - listed == {"kustomization.yaml", "secret.example.yaml"}, \
        "every manifest but the placeholder Secret is applied"
    for doc in kustomized.values():
        assert doc["metadata"]["name"] == SCRIPT
        assert "namespace" not in doc["metadata"], "the namespace is chosen at apply time"
    secret = load_yaml(K8S / "secret.example.yaml")
    for kind, doc in [*kustomized.items(), ("Secret", secret)]:
        if kind in SCHEMA_MODELS:
            assert schema_errors(doc, SCHEMA_MODELS[kind], kind) == []


def test_kubernetes_deployment_fits_the_image_config_and_secret(kustomized: dict[str, dict[str, Any]]) -> None:
    deployment = kustomized["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = deployment_container(kustomized)
    assert deployment["spec"]["replicas"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert (security["readOnlyRootFilesystem"], security["allowPrivilegeEscalation"]) == (True, False)
    assert security["capabilities"]["drop"] == ["ALL"]

    args = container["args"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert flag_value(args, "--storage.path") == f"{STATE_DIR}/state.json"
    assert {"emptyDir", "persistentVolumeClaim"} & volumes[mounts[STATE_DIR]["name"]].keys()
    assert flag_value(args, "--config.file") == CONFIG_PATH
    config_mount = mounts[str(Path(CONFIG_PATH).parent)]
    assert config_mount["readOnly"] is True
    config_map = kustomized["ConfigMap"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert Path(CONFIG_PATH).name in config_map["data"]

    env = {item["name"]: item for item in container["env"]}
    token = env["NCENTRAL_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = load_yaml(K8S / "secret.example.yaml")
    assert token["name"] == secret["metadata"]["name"]
    assert list(secret["stringData"]) == [token["key"]]
    assert list(secret["stringData"].values()) == ["REPLACE-WITH-YOUR-N-CENTRAL-API-TOKEN"]
    assert "data" not in secret
    assert "EXAMPLE ONLY" in (K8S / "secret.example.yaml").read_text(encoding="utf-8")


def test_kubernetes_configmap_config_passes_check_config(
    kustomized: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    text = kustomized["ConfigMap"]["data"][Path(CONFIG_PATH).name]
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


def test_kubernetes_service_and_servicemonitor(kustomized: dict[str, dict[str, Any]]) -> None:
    service = kustomized["Service"]
    pod_labels = kustomized["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"},
    ]
    monitor = kustomized["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    endpoints = monitor["spec"]["endpoints"]
    assert [endpoint["port"] for endpoint in endpoints] == ["metrics"]
    assert endpoints[0]["path"] == "/metrics"
    # prometheus-operator names the scrape job after the Service: the job the shipped alerts expect.
    assert "jobLabel" not in monitor["spec"]
    alerts = (ROOT / "prometheus" / "alerts.yml").read_text(encoding="utf-8")
    assert f'up{{job="{service["metadata"]["name"]}"}}' in alerts


def test_kubernetes_prometheusrule_is_the_shipped_alerts(kustomized: dict[str, dict[str, Any]]) -> None:
    rule = kustomized["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = load_yaml(ROOT / "prometheus" / "alerts.yml")
    # The same groups and rules, value for value (promtool checks alerts.yml in test_alerts.py) ...
    assert load_yaml(K8S / "prometheusrule.yaml")["spec"] == shipped
    # ... and still after kustomize, but for whitespace: it re-emits a folded (`>-`) expression whose lines
    # are more indented with one blank line more, which PromQL ignores.
    assert squeezed(rule["spec"]) == squeezed(shipped)


def squeezed(value: Any) -> Any:
    """`value` with every run of whitespace in its strings made one space."""
    if isinstance(value, dict):
        return {key: squeezed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [squeezed(item) for item in value]
    return " ".join(value.split()) if isinstance(value, str) else value


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



def test_systemd_unit_fits_the_exporter_and_its_config() -> None:
    service = unit_values(UNIT_FILE)["Service"]

    def one(key: str) -> str:
        assert len(service.get(key, [])) == 1, key
        return service[key][0]

    exec_start = shlex.split(one("ExecStart"))
    assert exec_start[0].endswith(f"/bin/{SCRIPT}")
    assert flag_value(exec_start[1:], "--config.file") == CONFIG_PATH
    assert flag_value(exec_start[1:], "--storage.path") == f"/var/lib/{one('StateDirectory')}/state.json"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"  # the exporter reloads on SIGHUP
    # Descriptors for every connection the web front keeps open at most, and its reserve beside them.
    assert int(one("LimitNOFILE")) >= web.MAX_CONNECTIONS + web.FD_RESERVE
    # The token: a credential, and the config path the unit's comments document is where systemd puts it.
    credential, _, source = one("LoadCredential").partition(":")
    assert source.startswith("/etc/ncentral-patch-exporter/")
    text = UNIT_FILE.read_text(encoding="utf-8")
    assert f"api_token_file: /run/credentials/{UNIT_FILE.name}/{credential}" in text


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

