"""What tests/test_deploy.py checks the deployment artefacts with, where no tool that owns the format runs
here: a reader and replayer of the Dockerfile (no container engine), and a checker of Kubernetes objects
against the API's schema (the models of the official Python client, generated from its OpenAPI document)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client

ROOT = Path(__file__).resolve().parent.parent

# --- the Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.args)
        assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), self.args
        return parsed


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions per stage (FROM first), continuation lines joined. Only as much
    reading as the replay below needs: hadolint is the Dockerfile's checker."""
    stages: list[list[Instruction]] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        current = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    _, sep, command = last(stage, "HEALTHCHECK").args.partition("CMD ")
    assert sep
    return Instruction("CMD", command).exec_form()


class RootFS:
    """Container paths mapped below a scratch directory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, container_path: str) -> Path:
        assert container_path.startswith("/"), container_path
        return self.base / container_path.lstrip("/")

    def reroot_word(self, word: str) -> str:
        return str(self.path(word)) if word.startswith("/") else word


def env_pairs(ins: Instruction) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(ins.args))


def replay_build_stage(stage: list[Instruction], rootfs: RootFS, log: Path) -> None:
    """The build stage's ENV, WORKDIR, COPY and RUN steps with container paths below `rootfs` (COPY takes
    the sources from the repository, without caches: what .dockerignore admits, see test_deploy.py)."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    workdir = rootfs.path("/")
    workdir.mkdir(parents=True, exist_ok=True)
    for ins in stage[1:]:
        if ins.keyword == "ENV":
            env.update({key: value for key, value in env_pairs(ins).items() if key != "PIP_NO_CACHE_DIR"})
        elif ins.keyword == "WORKDIR":
            workdir = rootfs.path(ins.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            *sources, dest = shlex.split(ins.args)
            target = rootfs.path(dest) if dest.startswith("/") else workdir / dest
            target.mkdir(parents=True, exist_ok=True)
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
                else:
                    shutil.copy2(path, target / path.name)
        elif ins.keyword == "RUN":
            for part in ins.args.split("&&"):
                words = [rootfs.reroot_word(word) for word in shlex.split(part)]
                if words[0] == "python":
                    words[0] = sys.executable
                with log.open("a") as out:
                    out.write(f"$ {shlex.join(words)}\n")
                    out.flush()
                    result = subprocess.run(words, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            timeout=480, check=False)
                assert result.returncode == 0, f"{shlex.join(words)} failed:\n{log.read_text()[-4000:]}"
        else:
            raise AssertionError(f"the test cannot replay {ins.keyword} in the build stage; extend it")


def final_env(stage: list[Instruction], rootfs: RootFS) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    for ins in (ins for ins in stage if ins.keyword == "ENV"):
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


# --- Kubernetes objects against the API's schema ----------------------------------------------------


# Core kinds, checked against the Kubernetes API schema; the prometheus-operator kinds are checked below
# against what they must agree with (no schema of theirs is available offline).
SCHEMA_MODELS = {"ConfigMap": "V1ConfigMap", "Deployment": "V1Deployment", "Secret": "V1Secret",
                 "Service": "V1Service"}


def schema_errors(value: Any, type_name: str, where: str) -> list[str]:
    """Fields unknown to the Kubernetes API, and values of the wrong JSON type, by the models of the
    official client (generated from the API's OpenAPI document)."""
    if type_name.lower().startswith("list["):  # list[V1Container] (List[...] in newer clients)
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [error for index, item in enumerate(value) for error in schema_errors(item, type_name[5:-1],
                                                                                    f"{where}[{index}]")]
    if type_name.lower().startswith(("dict(", "dict[")):  # dict(str, str), Dict[str, str]
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [error for key, item in value.items() for error in schema_errors(item, inner, f"{where}.{key}")]
    simple: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                           "datetime": (str,), "date": (str,), "object": (object,)}
    if type_name in simple:
        wrong = not isinstance(value, simple[type_name]) or (type_name == "int" and isinstance(value, bool))
        return [f"{where}: expected {type_name}, got {value!r}"] if wrong else []
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    fields = {json_name: model.openapi_types[name] for name, json_name in model.attribute_map.items()}
    errors = [f"{where}.{key}: unknown field of {type_name}" for key in value if key not in fields]
    return errors + [error for key, item in value.items() if key in fields
                     for error in schema_errors(item, fields[key], f"{where}.{key}")]
