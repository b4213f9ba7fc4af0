"""The README's tour is true: its plugin example works as written, its commands exist."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway_core.testing import InProcessGateway, RecordingUpstream, ingress, path, routed_service, write_manifests

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_first_lines_give_the_demo_and_test_commands() -> None:
    head = README.split("\n## ")[0]
    assert "./scripts/demo.sh" in head
    assert "./scripts/test.sh" in head
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_the_plugin_example_works_as_written(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Callable[..., InProcessGateway]
) -> None:
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "gateway_plugin_specs" in block]
    module = types.ModuleType("readme_stamp")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    api = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", api.port),
            ingress(
                "shop",
                rules=[("shop.localhost", [path("/api", "api")])],
                annotations={"meta-native.io/plugins": "stamp", "meta-native.io/plugin.stamp": "value: hello"},
            ),
        ],
    )
    gateway = in_process_gateway(manifests=manifests_dir, plugins=[module], load_entry_points=False)
    response = httpx.get(gateway.url + "/api/orders", headers={"host": "shop.localhost"})
    assert response.status_code == 200
    assert response.headers["x-stamp"] == "hello"
