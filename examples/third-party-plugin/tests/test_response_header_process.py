"""The installed package in a real ``gateway run``: found through its entry point only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)


@pytest.mark.e2e
def test_gateway_run_finds_the_entry_point_and_binds_it(
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
                annotations=plugin_annotations({"response-header": {"value": "edge-1"}}),
            ),
            ingress(
                "typo",
                rules=[("typo.test", [path("/", "api")])],
                annotations=plugin_annotations({"response-header": {"valeu": "edge-1"}}),
            ),
        ],
    )
    gateway = gateway_process(manifests_dir)

    response = httpx.get(f"{gateway.url}/", headers={"Host": "shop.test"})
    typo = httpx.get(f"{gateway.url}/", headers={"Host": "typo.test"})

    assert (response.status_code, response.headers["x-served-by"]) == (200, "edge-1")
    assert (typo.status_code, typo.json()["error"]) == (503, "route_unavailable")
    plugins = httpx.get(f"{gateway.admin_url}/plugins").json()
    assert plugins["distributions"]["response-header"] == "gateway-plugin-response-header 0.1.0"
    (rejected,) = httpx.get(f"{gateway.admin_url}/routes").json()["rejected"]
    assert rejected["ingress"] == "default/typo"
    assert "valeu: Extra inputs are not permitted" in rejected["reasons"][0]
