"""body-limit in a real ``gateway run``: a global default, per-Ingress overrides, a bad size."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from body_limit_support import limited_ingress

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    routed_service,
    write_manifests,
)


def pieces(total: int, size: int = 512) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.e2e
def test_gateway_run_applies_the_global_default_the_overrides_and_rejects_a_bad_size(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    small, large = upstream("small"), upstream("large")
    write_manifests(
        manifests_dir,
        [
            *routed_service("small", small.port),
            *routed_service("large", large.port),
            ingress("defaulted", rules=[("default.test", [path("/", "small")])]),
            limited_ingress("bigger", "bigger.test", "large", {"max_size": "64k"}),
            limited_ingress("off", "off.test", "large", {"max_size": 0}),
            limited_ingress("broken", "broken.test", "small", {"max_size": "10mb"}),
        ],
    )
    config = tmp_path / "gateway.yaml"
    settings = {"plugins": {"global": ["body-limit"], "config": {"body-limit": {"max_size": "1k"}}}}
    config.write_text(yaml.safe_dump(settings))
    process = gateway_process(manifests_dir, config=config)
    url = f"{process.url}/upload"

    with httpx.Client() as client:

        def status(host: str, content: bytes | Iterator[bytes]) -> int:
            return client.post(url, content=content, headers={"Host": host}).status_code

        # The global default (1k) on an Ingress that says nothing.
        assert status("default.test", b"x" * 1024) == 200
        refused = client.post(url, content=b"x" * 1025, headers={"Host": "default.test"})
        assert (refused.status_code, refused.json()["error"]) == (413, "content_too_large")
        assert status("default.test", pieces(2048)) == 413
        assert [len(seen.body) for seen in small.requests] == [1024]

        # An Ingress's own size replaces the default whole; 0 turns it off.
        assert status("bigger.test", b"x" * 64 * 1024) == 200
        assert status("bigger.test", pieces(64 * 1024 + 1)) == 413
        assert status("off.test", pieces(512 * 1024, 64 * 1024)) == 200
        assert [len(seen.body) for seen in large.requests] == [64 * 1024, 512 * 1024]

        broken = client.post(url, content=b"x", headers={"Host": "broken.test"})
        assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
        reasons = json.dumps(client.get(f"{process.admin_url}/routes").json()["rejected"])
        assert "is not a size" in reasons
        plugins = client.get(f"{process.admin_url}/plugins").json()["plugins"]
        assert {"name": "body-limit", "priority": 2200} in [
            {"name": plugin["name"], "priority": plugin["priority"]} for plugin in plugins
        ]
    assert "Traceback" not in process.log()
