"""What the deploy tests read: the manifests, the pod's settings, the Dockerfile, the build context."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from gateway_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
PROVIDER = ROOT / "gateway_core" / "providers" / "kubernetes"
POD_NAME = "meta-native-gateway-5d8f7c9b6-x2x9q"

# --- reading the manifests ------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def manifests() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists, in order."""
    objects: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        objects.extend(doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc is not None)
    return objects


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests() if obj["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = of_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def gateway_namespace() -> str:
    name: str = one("Namespace")["metadata"]["name"]
    return name


def container_port(port: int | str) -> int:
    """A port by number or by the name a probe or Service uses."""
    if isinstance(port, int):
        return port
    ports = {entry["name"]: entry["containerPort"] for entry in container()["ports"]}
    assert port in ports, f"no container port named {port!r}"
    return int(ports[port])


def pod_environment() -> dict[str, str]:
    """The container's environment as the kubelet gives it: downward API and $(VAR) refs resolved."""
    field_values = {"metadata.name": POD_NAME, "metadata.namespace": gateway_namespace()}
    environment: dict[str, str] = {}
    for entry in container().get("env", []):
        if "valueFrom" in entry:
            environment[entry["name"]] = field_values[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            environment[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda match: environment[match.group(1)], entry["value"]
            )
    return environment


def config_path() -> str:
    args = container()["args"]
    return str(args[args.index("--config") + 1])


def config_text() -> str:
    """The ConfigMap entry the container's ``--config`` path points to, through its mount."""
    path = Path(config_path())
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    assert str(path.parent) in mounts, f"{path} is not in a mounted volume"
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mounts[str(path.parent)])
    config_map = one("ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert path.name in config_map["data"], f"the ConfigMap has no key {path.name}"
    text: str = config_map["data"][path.name]
    return text


def run_invocation() -> click.Context:
    """The container's args parsed by the real ``gateway run`` command (the image's entrypoint)."""
    args = list(container()["args"])
    assert "command" not in container(), "the container must use the image's entrypoint"
    assert dockerfile_instruction("ENTRYPOINT") == ['["gateway"]']
    assert isinstance(main, click.Group)
    assert args[0] == "run"
    parent = click.Context(main, info_name="gateway")
    return main.commands["run"].make_context("run", args[1:], parent=parent)


# --- reading the Dockerfile -----------------------------------------------------------------


def dockerfile_lines() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_instruction(name: str, *, stage: int | None = None) -> list[str]:
    """The arguments of every ``name`` instruction (in one stage, counted from 0, if given)."""
    found: list[str] = []
    current = -1
    for line in dockerfile_lines():
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current += 1
        if word.upper() == name and (stage is None or stage == current):
            found.append(rest.strip())
    return found


def dockerignore_patterns() -> list[re.Pattern[str]]:
    """``.dockerignore`` as regular expressions (Go ``filepath.Match`` plus ``**``)."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this test; extend it"
        regex = re.escape(line.strip("/"))
        regex = regex.replace(r"\*\*/", "(?:[^/]+/)*").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(regex))
    return patterns


def build_context() -> Iterator[Path]:
    """Files Docker sends as the build context: the repository minus ``.dockerignore``."""
    patterns = dockerignore_patterns()
    for path in ROOT.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(ROOT)
        prefixes = ["/".join(relative.parts[: end + 1]) for end in range(len(relative.parts))]
        if not any(pattern.fullmatch(prefix) for pattern in patterns for prefix in prefixes):
            yield relative
