"""Every hook's example in ``docs/reference/hooks.md`` runs, and does what the page says.

``tests/test_docs.py`` checks that each hookspec has its section and that the section's
example registers against the real hookspecs. Here each example is *run*: registered as an
in-code plugin of a real gateway (served on real sockets from a thread, in front of a real
upstream) or of the real ``gateway`` command, and its documented effect is observed. A
hookspec without a runner here fails, so a new hook cannot ship without a working example.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
from click.testing import CliRunner

from gateway_core import hookspecs
from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "hooks.md"


def hookspec_names() -> list[str]:
    return sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gateway_"))


def example_source(hook: str) -> str:
    """The Python example of the hook's ``## <hook>`` section (one block per section)."""
    text = PAGE.read_text(encoding="utf-8")
    section = re.search(rf"^## {hook}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert section is not None, f"docs/reference/hooks.md has no '## {hook}' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"the {hook} section should have exactly one Python example"
    return str(blocks[0])


@dataclass
class Kit:
    """What a runner may use: the example as a module, and the test's fixtures."""

    module: types.ModuleType
    upstream: Callable[..., RecordingUpstream]
    manifests_dir: Path
    gateway: Callable[..., InProcessGateway]
    caplog: pytest.LogCaptureFixture
    monkeypatch: pytest.MonkeyPatch

    def serve(self, objects: list[dict[str, Any]]) -> InProcessGateway:
        write_manifests(self.manifests_dir, objects)
        return self.gateway(manifests=self.manifests_dir, plugins=[self.module], load_entry_points=False)


def run_plugin_specs(kit: Kit) -> None:
    api = kit.upstream("api")
    gateway = kit.serve(
        [
            *routed_service("api", api.port),
            ingress("shop", rules=[(None, [path("/", "api")])], annotations=bind("noop")),
        ]
    )
    assert httpx.get(f"{gateway.url}/items").status_code == 200
    (route,) = httpx.get(f"{gateway.admin_url}/routes").json()["routes"]
    assert [plugin["name"] for plugin in route["plugins"]] == ["noop"]
    (plugin,) = httpx.get(f"{gateway.admin_url}/plugins").json()["plugins"]
    assert (plugin["name"], plugin["description"]) == ("noop", "Does nothing.")


def run_route_validate(kit: Kit) -> None:
    api = kit.upstream("api")
    gateway = kit.serve(
        [
            *routed_service("api", api.port, namespace="public-shop"),
            *routed_service("api", api.port, namespace="internal"),
            ingress("shop", namespace="public-shop", rules=[("shop.test", [path("/", "api")])]),
            ingress("tools", namespace="internal", rules=[("tools.test", [path("/", "api")])]),
        ]
    )
    refused = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})
    assert (refused.status_code, refused.json()["error"]) == (503, "route_unavailable")
    assert httpx.get(f"{gateway.url}/", headers={"Host": "tools.test"}).status_code == 200
    (rejected,) = httpx.get(f"{gateway.admin_url}/routes").json()["rejected"]
    assert rejected["ingress"] == "public-shop/shop"
    assert "Ingresses in public-* namespaces must bind key-check" in " ".join(rejected["reasons"])


def run_routes_loaded(kit: Kit) -> None:
    kit.caplog.set_level(logging.INFO, logger="my_plugin")
    api = kit.upstream("api")
    kit.serve(
        [
            *routed_service("api", api.port),
            ingress("shop", rules=[(None, [path("/", "api"), path("/cart", "api")])]),
            ingress("broken", rules=[("broken.test", [path("/", "api")])], annotations=bind("nonexistent")),
        ]
    )
    messages = [record.getMessage() for record in kit.caplog.records if record.name == "my_plugin"]
    assert messages[0] == "routes: +3 -0"  # shop's two paths and broken's (served as 503)
    assert messages[1].startswith("Ingress default/broken is rejected: ")


def run_startup(kit: Kit) -> None:
    assert kit.module.STATE == {}
    api = kit.upstream("api")
    write_manifests(kit.manifests_dir, [*routed_service("api", api.port)])
    overrides = {"kubernetes": {"namespace": "shop"}}
    kit.gateway(manifests=kit.manifests_dir, plugins=[kit.module], load_entry_points=False, overrides=overrides)
    assert kit.module.STATE == {"namespace": "shop"}


def run_shutdown(kit: Kit) -> None:
    kit.caplog.set_level(logging.INFO, logger="my_plugin")
    api = kit.upstream("api")
    gateway = kit.serve([*routed_service("api", api.port)])
    assert not [record for record in kit.caplog.records if record.name == "my_plugin"]
    gateway.stop()
    (record,) = [record for record in kit.caplog.records if record.name == "my_plugin"]
    assert record.getMessage() == "worker stopped; flushing buffers"


def run_admin_routers(kit: Kit) -> None:
    api = kit.upstream("api")
    gateway = kit.serve([*routed_service("api", api.port), ingress("all", default_backend="api")])
    assert httpx.get(f"{gateway.admin_url}/my-plugin/status").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/my-plugin/status").json()["upstream"] == "api"  # the proxy is not shadowed


def run_cli_commands(kit: Kit) -> None:
    from gateway_core import cli, plugin_manager

    def with_example(**options: Any) -> pluggy.PluginManager:
        return plugin_manager.get_plugin_manager(plugins=[kit.module], load_entry_points=False)

    kit.monkeypatch.setattr(cli, "get_plugin_manager", with_example)
    runner = CliRunner()
    said = runner.invoke(cli.main, ["hello"])
    assert (said.exit_code, said.output) == (0, "hello\n")
    listed = runner.invoke(cli.main, ["--help"])
    assert re.search(r"^\s+hello\s+Say hello\.$", listed.output, flags=re.MULTILINE), listed.output


def run_asgi_wrappers(kit: Kit) -> None:
    api = kit.upstream("api")
    gateway = kit.serve([*routed_service("api", api.port), ingress("all", default_backend="api")])
    served = httpx.get(f"{gateway.url}/items")
    unrouted = httpx.get(f"{gateway.admin_url}/routes")
    assert served.status_code == 200
    assert re.fullmatch(r"gateway;dur=\d+\.\d", served.headers["server-timing"])
    assert "server-timing" not in unrouted.headers  # the admin app is not wrapped


def run_route_source(kit: Kit) -> None:
    gateway = kit.gateway(plugins=[kit.module], load_entry_points=False)  # no manifests directory
    assert type(gateway.gateway.source).__name__ == "StaticSource"
    (route,) = httpx.get(f"{gateway.admin_url}/routes").json()["routes"]
    assert (route["host"], route["path"], route["backend"]["endpoints"]) == ("*", "/", ["example.com:80"])
    with_dir = InProcessGateway(manifests=kit.manifests_dir, plugins=[kit.module], load_entry_points=False)
    assert type(with_dir.gateway.source).__name__ == "ManifestDirectory"  # it steps aside for a directory


def bind(*plugins: str) -> dict[str, str]:
    return plugin_annotations(dict.fromkeys(plugins))


RUNNERS: dict[str, Callable[[Kit], None]] = {
    "gateway_plugin_specs": run_plugin_specs,
    "gateway_route_validate": run_route_validate,
    "gateway_routes_loaded": run_routes_loaded,
    "gateway_startup": run_startup,
    "gateway_shutdown": run_shutdown,
    "gateway_admin_routers": run_admin_routers,
    "gateway_cli_commands": run_cli_commands,
    "gateway_asgi_wrappers": run_asgi_wrappers,
    "gateway_route_source": run_route_source,
}


@pytest.fixture
def example_module() -> Iterator[Callable[[str], types.ModuleType]]:
    """Execute a hook's example as a module of its own (pydantic resolves names via sys.modules)."""
    names: list[str] = []

    def load(hook: str) -> types.ModuleType:
        name = f"hook_reference_{hook}"
        module = types.ModuleType(name)
        sys.modules[name] = module
        names.append(name)
        exec(compile(example_source(hook), f"<hooks.md: {hook}>", "exec"), module.__dict__)
        return module

    yield load
    for name in names:
        sys.modules.pop(name, None)


def test_every_hookspec_has_a_runner_and_every_runner_a_hookspec() -> None:
    assert sorted(RUNNERS) == hookspec_names(), "add a runner to RUNNERS for each hook (and its example to hooks.md)"


@pytest.mark.parametrize("hook", hookspec_names())
def test_the_hook_example_runs_and_does_what_the_page_says(
    hook: str,
    example_module: Callable[[str], types.ModuleType],
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert hook in RUNNERS, f"no runner for {hook} in tests/test_hook_reference.py"
    module = example_module(hook)
    assert any(getattr(value, f"{hookspecs.PROJECT}_impl", None) for value in vars(module).values()), hook
    RUNNERS[hook](Kit(module, upstream, manifests_dir, in_process_gateway, caplog, monkeypatch))
