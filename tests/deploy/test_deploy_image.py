"""The image: the Dockerfile installs the gateway and every plugin, slim and non-root, and the
wheels build from exactly the files it copies (after ``.dockerignore``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from gateway_core.settings import GatewaySettings, parse_addr
from tests.deploy.deploy_support import (
    ROOT,
    build_context,
    dockerfile_instruction,
)

# --- the image ------------------------------------------------------------------------------


def plugin_distributions() -> dict[str, str]:
    """Folder under plugins/ -> its distribution name."""
    found = {}
    for folder in sorted(path for path in (ROOT / "plugins").iterdir() if path.is_dir()):
        pyproject = folder / "pyproject.toml"
        assert pyproject.is_file(), f"plugins/{folder.name} is not a distribution (no pyproject.toml)"
        found[folder.name] = tomllib.loads(pyproject.read_text())["project"]["name"]
    return found


def wheel_targets() -> list[str]:
    """The projects ``pip wheel`` builds in the Dockerfile's first stage."""
    runs = [run for run in dockerfile_instruction("RUN", stage=0) if "pip wheel" in run]
    assert len(runs) == 1, "the first stage builds the wheels with one `pip wheel`"
    words = shlex.split(runs[0])
    words = words[words.index("wheel") + 1 :]
    targets = []
    while words:
        word = words.pop(0)
        if word in {"--wheel-dir", "-w"}:
            words.pop(0)
        elif not word.startswith("-"):
            targets.append(word)
    return targets


def test_the_dockerfile_installs_the_gateway_and_every_plugin() -> None:
    targets = wheel_targets()
    assert "." in targets
    expanded = {path.name for target in targets if target != "." for path in ROOT.glob(target.rstrip("/"))}
    assert expanded == set(plugin_distributions()), "the Dockerfile misses (or adds) folders under plugins/"
    runtime_installs = [run for run in dockerfile_instruction("RUN", stage=1) if "pip install" in run]
    assert len(runtime_installs) == 1
    assert "/wheels/*.whl" in runtime_installs[0]


def test_the_image_is_slim_non_root_and_exposes_both_listeners() -> None:
    assert dockerfile_instruction("ARG")[0] == "PYTHON_IMAGE=python:3.11-slim"
    assert dockerfile_instruction("FROM") == ["${PYTHON_IMAGE} AS wheels", "${PYTHON_IMAGE}"]
    user = dockerfile_instruction("USER")[-1].partition(":")[0]
    assert user.isdigit()  # numeric, so the kubelet can check runAsNonRoot
    assert int(user) != 0
    exposed = {int(port) for port in dockerfile_instruction("EXPOSE")[0].split()}
    defaults = GatewaySettings()
    listeners = (defaults.server.addr, defaults.server.https_addr, defaults.metrics.addr)
    assert exposed == {parse_addr(addr)[1] for addr in listeners}


def test_the_wheels_build_from_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """The first stage, replayed: build context minus .dockerignore, the COPY lines, pip wheel."""
    context = set(build_context())
    source = tmp_path / "src"
    source.mkdir()
    for copy in dockerfile_instruction("COPY", stage=0):
        *sources, destination = shlex.split(copy)
        assert not any(word.startswith("--") for word in sources), "COPY flags are not modelled"
        for item in sources:
            item = item.rstrip("/")
            for relative in sorted(context):
                if relative.as_posix() == item:  # a file: into the destination folder
                    target = source / destination / relative.name
                elif relative.as_posix().startswith(item + "/"):  # a folder: its content
                    target = source / destination / relative.relative_to(item)
                else:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / relative, target)
    projects = [
        str(path)
        for target in wheel_targets()
        for path in ([source] if target == "." else sorted(source.glob(target.rstrip("/"))))
    ]
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(wheels),
            *projects,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = {path.name.split("-")[0] for path in wheels.glob("*.whl")}
    expected = {"meta-native-gateway", *plugin_distributions().values()}
    assert built == {name.replace("-", "_") for name in expected}
