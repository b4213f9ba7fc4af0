"""The example third-party plugin is a real distribution, and the plugin guide shows its real code.

``examples/third-party-plugin`` tests its own code; this module tests its packaging, the part
an author gets wrong without noticing while an editable install hides it: the wheel is built
with the package's own build backend, installed (not editable) into a directory of its own,
and a real ``gateway run`` then has to find the plugin through that wheel's entry point.

The editable install of the same distribution stays in the virtualenv, so which copy the
gateway loads is decided by ``sys.path`` order. The wheel's directory goes first on
``PYTHONPATH``: ``importlib`` then imports the module from it, ``importlib.metadata`` lists its
``.dist-info`` first, and pluggy registers the first ``response-header`` entry point it meets and
skips the later duplicate (the editable install's ``.pth`` entries come after site-packages).
Rather than trust that reasoning, a probe runs the gateway's own plugin manager factory in
exactly the environment the ``gateway run`` process gets, and reports where the registered
module and its distribution live; the same probe without ``PYTHONPATH`` must report the
source tree, so it can tell the two apart. A fresh virtualenv would isolate harder but costs
a full dependency install per run.

``docs/guides/writing-a-plugin.md`` shows the example's files in full (a block captioned with
the file's path) or in part (captioned ``From <path>:``): those must be the files' text. Its
other examples must run: each is executed as a module, and the team-token and error examples
serve requests through an in-process gateway.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from email.parser import Parser
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from gateway_plugin_response_header import ResponseHeaderConfig

from gateway_core import PluginSpec, hookimpl
from gateway_core.testing import (
    GatewayProcess,
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    write_manifests,
)
from gateway_core.testing.docs import config_table, page_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "third-party-plugin"
PACKAGE = "gateway_plugin_response_header"
PROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
GUIDE = ROOT / "docs" / "guides" / "writing-a-plugin.md"
WHOLE_FILE = re.compile(r"^`([^`\s]+)`:\n\n```\w+\n(.*?)^```", re.M | re.S)
EXCERPT = re.compile(r"From `([^`\s]+)`:\n\n```python\n(.*?)^```", re.M | re.S)

PROBE = """
import importlib.metadata, inspect, json
from gateway_core.plugin_manager import get_plugin_manager
pm = get_plugin_manager()
module = pm.get_plugin("response-header")
dists = [dist for plugin, dist in pm.list_plugin_distinfo() if plugin is module]
print(json.dumps({
    "module": inspect.getfile(module),
    "distribution": str(dists[0].locate_file("")) if dists else None,
    "version": importlib.metadata.version("gateway-plugin-response-header"),
}))
"""


def pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet", "--no-index", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    hint = "\n(building the wheel needs hatchling here: pip install hatchling)" if "hatchling" in result.stderr else ""
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}{result.stderr}{hint}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's wheel, built by its own build backend (hatchling) from the source tree."""
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(EXAMPLE))
    (built,) = out.glob(f"{PACKAGE}-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the wheel alone is installed into (a regular install, not editable)."""
    target = tmp_path_factory.mktemp("site")
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def wheel_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def probe(env: dict[str, str]) -> dict[str, str | None]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, str | None] = json.loads(result.stdout)
    return found


def test_the_wheel_holds_the_package_its_entry_point_and_metadata(wheel: Path) -> None:
    dist_info = f"{PACKAGE}-{PROJECT['version']}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    code = {name for name in names if not name.startswith(dist_info)}
    assert code == {f"{PACKAGE}/{file}" for file in ("__init__.py", "config.py", "plugin.py", "py.typed")}
    groups = configparser.ConfigParser()
    groups.read_string(entry_points)
    assert dict(groups["gateway_core"]) == {"response-header": PACKAGE}
    assert (metadata["Name"], metadata["Version"]) == (PROJECT["name"], PROJECT["version"])
    assert "meta-native-gateway>=0.1" in metadata.get_all("Requires-Dist", [])
    assert metadata["Requires-Python"] == ">=3.11"


def test_with_the_wheel_first_on_the_path_the_gateway_loads_the_wheel(site: Path) -> None:
    from_wheel = probe(wheel_env(site))
    assert Path(str(from_wheel["module"])).is_relative_to(site)
    assert Path(str(from_wheel["distribution"])).is_relative_to(site)
    assert from_wheel["version"] == PROJECT["version"]
    # The control: the same probe without the wheel finds the editable source tree instead.
    from_tree = probe({})
    assert Path(str(from_tree["module"])).is_relative_to(EXAMPLE / "src")


@pytest.mark.e2e
def test_gateway_run_binds_the_installed_wheel_and_rejects_a_bad_config(
    site: Path,
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            ingress(
                "shop",
                rules=[("shop.test", [path("/", "api")])],
                annotations=plugin_annotations({"response-header": {"name": "x-edge", "value": "from-the-wheel"}}),
            ),
            ingress(
                "broken",
                rules=[("broken.test", [path("/", "api")])],
                annotations=plugin_annotations({"response-header": {"value": "two\nlines"}}),
            ),
        ],
    )
    gateway = gateway_process(manifests_dir, env=wheel_env(site))

    served = httpx.get(f"{gateway.url}/items", headers={"Host": "shop.test"})
    broken = httpx.get(f"{gateway.url}/items", headers={"Host": "broken.test"})

    assert (served.status_code, served.headers["x-edge"]) == (200, "from-the-wheel")
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    assert [seen.path for seen in api.requests] == ["/items"]
    routes = httpx.get(f"{gateway.admin_url}/routes").json()
    assert [item["ingress"] for item in routes["rejected"]] == ["default/broken"]
    reasons = " ".join(routes["rejected"][0]["reasons"])
    assert "plugin 'response-header': invalid config: value: Value error, must be printable ASCII" in reasons
    plugins = httpx.get(f"{gateway.admin_url}/plugins").json()
    assert plugins["distributions"]["response-header"] == f"{PROJECT['name']} {PROJECT['version']}"


# --- the guide ------------------------------------------------------------------------------


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_the_guide_shows_every_file_of_the_package_as_it_is() -> None:
    shown = dict(WHOLE_FILE.findall(guide()))
    package = {f"src/{PACKAGE}/{file.name}" for file in (EXAMPLE / "src" / PACKAGE).glob("*.py")}
    assert package | {"pyproject.toml"} <= set(shown), "the guide must show each of these files in full"
    for name, text in shown.items():
        assert (EXAMPLE / name).read_text() == text, f"the guide's {name} differs from the example's"


def test_the_guide_excerpts_are_the_example_tests_own_code() -> None:
    excerpts = EXCERPT.findall(guide())
    assert len(excerpts) >= 2
    for name, text in excerpts:
        source = (EXAMPLE / name).read_text()
        for chunk in text.split("\n\n\n"):
            assert chunk.strip() in source, f"an excerpt of {name} is not in the file:\n{chunk}"


@pytest.mark.parametrize("page", [GUIDE, EXAMPLE / "README.md"], ids=["guide", "readme"])
def test_the_config_tables_match_the_model(page: Path) -> None:
    assert page_table(page.read_text(encoding="utf-8")) == config_table(ResponseHeaderConfig), (
        f"stale table; run python -m gateway_core.testing.docs {page.relative_to(ROOT)} {PACKAGE}:ResponseHeaderConfig"
    )


def other_blocks() -> list[str]:
    """The guide's Python blocks that are not the example's files or excerpts of them."""
    text = guide()
    tied = {block for _, block in WHOLE_FILE.findall(text)} | {block for _, block in EXCERPT.findall(text)}
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    return [block for block in blocks if block not in tied]


def other_block(marker: str) -> str:
    """The one other block of the guide containing ``marker``."""
    (block,) = [block for block in other_blocks() if marker in block]
    return block


@pytest.fixture
def run_block() -> Iterator[Callable[[str], ModuleType]]:
    """Execute a guide block as a module of its own (pydantic resolves names via sys.modules)."""
    names: list[str] = []

    def run(block: str) -> ModuleType:
        name = f"guide_example_{len(names)}"
        module = ModuleType(name)
        sys.modules[name] = module
        names.append(name)
        exec(compile(block, f"<{GUIDE.name}: {name}>", "exec"), module.__dict__)
        return module

    yield run
    for name in names:
        sys.modules.pop(name, None)


def test_every_other_example_of_the_guide_runs(run_block: Callable[[str], ModuleType]) -> None:
    blocks = other_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        run_block(block)


def test_the_team_token_example_authenticates_strips_and_refuses(
    run_block: Callable[[str], ModuleType],
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    team_token = run_block(other_block('name="team-token"'))
    api = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            secret("team-tokens", {"checkout": "t-checkout\n", "search": "t-search", "blank": " \n"}),
            ingress(
                "shop",
                rules=[("shop.test", [path("/", "api")])],
                annotations=plugin_annotations({"team-token": {"secret": "team-tokens"}}),
            ),
            ingress(
                "nosecret",
                rules=[("nosecret.test", [path("/", "api")])],
                annotations=plugin_annotations({"team-token": {"secret": "missing"}}),
            ),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    gateway = in_process_gateway(manifests=manifests_dir, plugins=[team_token], load_entry_points=False)

    def get(host: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{gateway.url}/", headers={"Host": host, **headers})

    assert get("shop.test", Authorization="Bearer t-checkout", **{"X-Auth-User": "admin"}).status_code == 200
    assert api.requests[-1].header_list.count(("x-auth-user", "checkout")) == 1
    assert ("x-auth-user", "admin") not in api.requests[-1].header_list
    assert "authorization" not in api.requests[-1].headers
    refused = [
        get("shop.test"),
        get("shop.test", Authorization="Bearer t-nope"),
        get("shop.test", Authorization="Basic t-search"),
        get("shop.test", Authorization="Bearer"),  # an empty token
        httpx.get(f"{gateway.url}/", headers={b"Host": b"shop.test", b"Authorization": b"Bearer \xe9t\xe9"}),
    ]
    assert [(response.status_code, response.json()["error"]) for response in refused] == [(401, "unauthorized")] * 5
    assert get("open.test", **{"X-Auth-User": "admin"}).status_code == 200
    assert "x-auth-user" not in api.requests[-1].headers  # owned: stripped on a route without the plugin too
    assert get("nosecret.test", Authorization="Bearer t-search").status_code == 503
    (rejected,) = httpx.get(f"{gateway.admin_url}/routes").json()["rejected"]
    assert "Secret 'missing' in 'default' is missing or holds no token" in rejected["reasons"][0]
    assert len(api.requests) == 2


class MaskErrorsPlugin:
    """Binds the guide's ``MaskErrors`` class, which the guide shows without a spec."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    @hookimpl
    def gateway_plugin_specs(self) -> Sequence[PluginSpec[Any]]:
        return [PluginSpec(name="mask-errors", factory=lambda config, binding: self.module.MaskErrors())]


def test_the_error_example_replaces_an_upstream_error_page(
    run_block: Callable[[str], ModuleType],
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    api = upstream("api", status=500)
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            ingress("shop", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"mask-errors": None})),
        ],
    )
    plugin = MaskErrorsPlugin(run_block(other_block("class MaskErrors")))
    gateway = in_process_gateway(manifests=manifests_dir, plugins=[plugin], load_entry_points=False)

    response = httpx.get(f"{gateway.url}/")

    assert response.status_code == 502
    assert response.json() == {"error": "upstream_error", "message": "the gateway could not complete the request"}
    api.status = 200
    assert httpx.get(f"{gateway.url}/").status_code == 200
