from collections.abc import Callable
from pathlib import Path

import httpx

from gateway_core.testing import GatewayProcess, RecordingUpstream, ingress, path, routed_service, write_manifests


def test_routes_to_upstream(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir, [*routed_service("api", api.port), ingress("demo", rules=[("demo.local", [path("/", "api")])])]
    )
    gw = gateway_process(manifests_dir)
    response = httpx.get(gw.url + "/hello?x=1", headers={"host": "demo.local"})
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/hello?x=1"
    assert api.requests[0].headers["x-forwarded-for"] == "127.0.0.1"
