"""redirect through a real ``gateway run`` process with two real upstreams."""

from __future__ import annotations

import json
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
def test_gateway_run_redirects_adds_hsts_and_rejects_a_protocol_relative_target(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    tmp_path: Path,
) -> None:
    web, api = upstream("web"), upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("web", web.port),
            *routed_service("api", api.port),
            ingress(
                "web",
                rules=[("www.test", [path("/", "web")])],
                annotations=plugin_annotations({"redirect": {"https_redirect": True, "hsts": {"max_age": 120}}}),
            ),
            ingress(
                "api-v1",
                rules=[("api.test", [path("/v1", "api")])],
                annotations=plugin_annotations({"redirect": {"to": "/v2", "preserve_path": True}}),
            ),
            ingress("api-v2", rules=[("api.test", [path("/v2", "api")])]),
            ingress(
                "evil",
                rules=[("evil.test", [path("/", "web")])],
                annotations=plugin_annotations({"redirect": {"to": "//evil.com"}}),
            ),
        ],
    )
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  trusted_proxies: ['127.0.0.1/32']\n")
    process = gateway_process(manifests_dir, config=config)

    plain = httpx.get(f"{process.url}/shop?item=1", headers={"Host": "www.test", "X-Forwarded-Proto": "http"})
    assert (plain.status_code, plain.headers["location"]) == (308, "https://www.test/shop?item=1")
    secure = httpx.get(f"{process.url}/shop", headers={"Host": "www.test", "X-Forwarded-Proto": "https"})
    assert (secure.status_code, secure.headers["strict-transport-security"]) == (200, "max-age=120")
    assert [request.path for request in web.requests] == ["/shop"]

    with httpx.Client(base_url=process.url, headers={"Host": "api.test"}, follow_redirects=True) as client:
        followed = client.get("/v1/orders/7?expand=items")
    assert followed.status_code == 200
    assert [(r.status_code, r.headers["location"]) for r in followed.history] == [(308, "/v2/orders/7?expand=items")]
    assert [request.path for request in api.requests] == ["/v2/orders/7?expand=items"]

    evil = httpx.get(f"{process.url}/", headers={"Host": "evil.test"})
    assert (evil.status_code, evil.json()["error"]) == (503, "route_unavailable")
    assert "location" not in evil.headers
    rejected = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "protocol-relative" in rejected
