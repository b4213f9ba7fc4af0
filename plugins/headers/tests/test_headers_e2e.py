"""headers through a real ``gateway run`` process with several real upstreams."""

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
def test_gateway_run_edits_each_routes_headers_and_rejects_a_managed_header(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    orders = upstream("orders", extra_headers={"X-Powered-By": "php/5"})
    catalog = upstream("catalog", extra_headers={"X-Powered-By": "php/5"})
    write_manifests(
        manifests_dir,
        [
            *routed_service("orders", orders.port),
            *routed_service("catalog", catalog.port),
            ingress(
                "orders",
                rules=[("orders.test", [path("/", "orders")])],
                annotations=plugin_annotations(
                    {
                        "headers": {
                            "request": {"set": {"X-Origin": "${scheme}://${host}${path}"}, "remove": ["Cookie"]},
                            "response": {"add": {"X-Cost": "$$0 ${method}"}, "remove": ["X-Powered-By"]},
                        }
                    }
                ),
            ),
            ingress(
                "catalog",
                rules=[("catalog.test", [path("/", "catalog")])],
                annotations=plugin_annotations({"headers": {"response": {"set": {"X-Frame-Options": "DENY"}}}}),
            ),
            ingress(
                "broken",
                rules=[("broken.test", [path("/", "catalog")])],
                annotations=plugin_annotations({"headers": {"request": {"set": {"Host": "evil.test"}}}}),
            ),
        ],
    )
    process = gateway_process(manifests_dir)

    first = httpx.get(f"{process.url}/buy", headers={"Host": "orders.test", "Cookie": "session=1"})
    assert first.status_code == 200
    assert orders.requests[-1].headers["x-origin"] == "http://orders.test/buy"
    assert "cookie" not in orders.requests[-1].headers
    assert (first.headers["x-cost"], "x-powered-by" in first.headers) == ("$0 GET", False)

    second = httpx.get(f"{process.url}/list", headers={"Host": "catalog.test", "Cookie": "session=1"})
    assert second.status_code == 200
    assert catalog.requests[-1].headers["cookie"] == "session=1"  # other route: request untouched
    assert "x-origin" not in catalog.requests[-1].headers
    assert (second.headers["x-frame-options"], second.headers["x-powered-by"]) == ("DENY", "php/5")

    broken = httpx.get(f"{process.url}/", headers={"Host": "broken.test"})
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    reasons = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "managed by the gateway" in reasons
    assert len(catalog.requests) == 1
