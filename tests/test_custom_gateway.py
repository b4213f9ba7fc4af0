"""The custom-gateway example, its guides and the suite agree; following the tutorial works.

``examples/custom-gateway`` tests its own behaviour. Here: the tutorial's code, put together
part by part, is the example program; every excerpt in the guides is the example's code;
the routes files the docs show are valid; the flags they use exist; the suite type-checks
and runs the example. And the tutorial itself, followed to the letter: its program (built
from the page alone), its routes file, its file server and its curl commands with their
answers.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
import tomllib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import GatewayProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom-gateway"
PROGRAM = EXAMPLE / "tenant_gateway.py"
TUTORIAL = ROOT / "docs" / "guides" / "build-your-own-gateway.md"
SOURCES = ROOT / "docs" / "guides" / "route-sources.md"
README = EXAMPLE / "README.md"
PART = re.compile(r"^`tenant_gateway\.py`, part (\d+):\n\n```python\n(.*?)^```", re.M | re.S)
EXCERPT = re.compile(r"^From `([^`]+)`:\n\n```python\n(.*?)^```", re.M | re.S)


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def tutorial_program() -> str:
    """``tenant_gateway.py`` as a reader of the tutorial writes it: its parts, in order."""
    parts = sorted((int(number), code) for number, code in PART.findall(read(TUTORIAL)))
    assert [number for number, _ in parts] == list(range(1, len(parts) + 1)), "parts must be numbered 1, 2, ..."
    return "\n\n".join(code for _, code in parts)


def test_the_tutorials_parts_put_together_are_the_example_program() -> None:
    assert tutorial_program() == read(PROGRAM), "the tutorial's parts differ from examples/custom-gateway"


def test_the_tutorials_routes_file_is_the_examples() -> None:
    (routes,) = [block for block in blocks(read(TUTORIAL), "yaml") if block.startswith("# The routes")]
    assert routes == read(EXAMPLE / "routes.yaml")


@pytest.mark.parametrize("page", [TUTORIAL, SOURCES], ids=["tutorial", "route-sources"])
def test_every_excerpt_is_the_examples_own_code(page: Path) -> None:
    excerpts = EXCERPT.findall(read(page))
    assert excerpts, f"{page.name} shows no excerpt"
    for name, code in excerpts:
        source = read(EXAMPLE / name) if (EXAMPLE / name).exists() else read(EXAMPLE / "tests" / name)
        for chunk in code.split("\n\n\n"):
            assert chunk.strip() in source, f"an excerpt of {name} in {page.name} is not in the file:\n{chunk}"


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import tenant_gateway

    yield tenant_gateway
    sys.modules.pop("tenant_gateway", None)


@pytest.mark.parametrize("page", [README, SOURCES, TUTORIAL], ids=["readme", "route-sources", "tutorial"])
def test_every_routes_file_the_docs_show_is_valid(page: Path, example_on_path: types.ModuleType) -> None:
    shown = [block for block in blocks(read(page), "yaml") if re.search(r"^routes:", block, flags=re.M)]
    assert shown, f"{page.name} shows no routes file"
    for block in shown:
        snapshot = example_on_path.RoutesFile(Path("routes.yaml")).parse(block.encode())
        assert snapshot.problems == (), block
        assert snapshot.objects


def test_the_route_source_guides_own_examples_run(example_on_path: types.ModuleType) -> None:
    tied = {code for _, code in EXCERPT.findall(read(SOURCES))}
    examples = [block for block in blocks(read(SOURCES), "python") if block not in tied]
    assert len(examples) == 2
    ran: list[dict[str, Any]] = []
    for index, block in enumerate(examples):
        ran.append({"__name__": f"route_sources_example_{index}"})
        exec(compile(block, f"<route-sources.md: {index}>", "exec"), ran[-1])
    built, assembled = ran[0]["snapshot"], ran[1]["gateway"]
    assert [(obj.kind, obj.name) for obj in built.objects] == [("Service", "web")]
    assert [str(problem) for problem in built.problems] == ["registry: service 'legacy' has no address; left out"]
    assert isinstance(assembled.source, example_on_path.RoutesFile)


def test_the_flags_the_docs_use_are_the_programs() -> None:
    usage = subprocess.run(
        [sys.executable, str(PROGRAM), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for page in (TUTORIAL, README):
        for command in re.findall(r"^\$ python tenant_gateway\.py (.*)$", read(page), flags=re.M):
            for flag in re.findall(r"--[a-z-]+", command):
                assert flag in usage, f"{page.name} uses {flag}, which tenant_gateway.py does not have"


def test_the_suite_type_checks_and_runs_the_example() -> None:
    config = tomllib.loads(read(ROOT / "pyproject.toml"))
    assert "examples/custom-gateway" in config["tool"]["mypy"]["files"]
    assert "examples" in config["tool"]["pytest"]["ini_options"]["testpaths"]
    tests = sorted(path.name for path in (EXAMPLE / "tests").glob("test_*.py"))
    assert tests == ["test_tenant_gateway_process.py", "test_tenant_gateway_routes.py"]
    # The example's one dependency beyond the gateway is installed by the README's install step.
    bootstrap = read(ROOT / "scripts" / "bootstrap.sh")
    assert "for project in plugins/*/" in bootstrap
    assert (ROOT / "plugins" / "rate-limit" / "pyproject.toml").is_file()


# --- the tutorial, followed -------------------------------------------------------------------


def console(section: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of the console blocks under ``## <section>``."""
    text = read(TUTORIAL)
    body = text[text.index(f"## {section}") :]
    body = body[: body.index("\n## ", 1)]
    found: list[tuple[str, list[str]]] = []
    for block in blocks(body, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


@pytest.fixture
def started() -> Iterator[Callable[[list[str], Path], subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)


def serves(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class TutorialProcess(GatewayProcess):
    """The tutorial's command line, run in the reader's folder, driven like ``gateway run``."""

    argv: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        return self.argv


@pytest.mark.e2e
def test_following_the_tutorial_gives_a_working_gateway(
    tmp_path: Path, started: Callable[[list[str], Path], subprocess.Popen[bytes]]
) -> None:
    upstream_port, port, admin_port = free_port(), free_port(), free_port()
    (tmp_path / "tenant_gateway.py").write_text(tutorial_program())
    (routes,) = [block for block in blocks(read(TUTORIAL), "yaml") if block.startswith("# The routes")]
    (tmp_path / "routes.yaml").write_text(routes.replace("127.0.0.1:9101", f"127.0.0.1:{upstream_port}"))

    steps = console("4. Run it")
    for command, _ in steps:
        if command.startswith(("mkdir", "echo")):
            subprocess.run(command, shell=True, cwd=tmp_path, check=True)  # the tutorial's own shell lines
    (server,) = [shlex.split(command.rstrip(" &")) for command, _ in steps if "http.server" in command]
    server = [sys.executable, *server[1:]]
    server[server.index("9101")] = str(upstream_port)
    started(server, tmp_path)
    wait_until(lambda: serves(f"http://127.0.0.1:{upstream_port}/healthz"), message="the file server")

    (program,) = [shlex.split(command) for command, _ in steps if command.startswith("python tenant_gateway.py")]
    program = [
        sys.executable,
        *(str(tmp_path / word) if word.endswith((".py", ".yaml")) else word for word in program[1:]),
    ]
    program[program.index("127.0.0.1:8080")] = f"127.0.0.1:{port}"
    program[program.index("127.0.0.1:9090")] = f"127.0.0.1:{admin_port}"
    https = {"GATEWAY_SERVER__HTTPS_ADDR": f"127.0.0.1:{free_port()}"}  # not the default :8443 (shared machine)
    gateway = TutorialProcess(manifests=None, port=port, admin_port=admin_port, argv=program, env=https)
    try:
        gateway.start()
        asked = [
            (shlex.split(command.split("#")[0]), expected) for command, expected in steps if command.startswith("curl")
        ]
        assert len(asked) == 6
        for words, expected in asked:
            headers = dict(value.split(": ", 1) for flag, value in itertools.pairwise(words) if flag == "-H")
            url = (
                words[-1]
                .replace("localhost:8080", f"127.0.0.1:{port}")
                .replace("localhost:9090", f"127.0.0.1:{admin_port}")
            )
            response = httpx.get(f"http://{url}", headers=headers)
            if expected:
                assert response.text.splitlines() == expected, words
    finally:
        assert gateway.stop() == 0, gateway.log()
