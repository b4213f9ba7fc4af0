"""forward-auth in a real ``gateway run`` process, with a real auth service and upstream."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from forward_auth_service import AuthService, guarded_ingress

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    routed_service,
    wait_until,
    write_manifests,
)


@pytest.fixture
def auth() -> Iterator[AuthService]:
    with AuthService() as service:
        yield service


@pytest.mark.e2e
def test_gateway_run_guards_routes_and_rejects_a_bad_url(
    auth: AuthService,
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    backend = upstream("api")
    profile = {"upstream_headers": ["X-User", "X-Groups"], "identity_from": "X-User"}
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            guarded_ingress("app", "app.test", {"url": auth.url, **profile, "cache_ttl": 30}),
            guarded_ingress("down", "down.test", {"url": f"http://127.0.0.1:{free_port()}/", "timeout": 0.5}),
            guarded_ingress("broken", "broken.test", {"url": "ftp://auth.test/verify"}),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    process = gateway_process(manifests_dir, workers=2)

    def get(host: str, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(f"{process.url}/p?q=1", headers={"Host": host, **headers})

    denied = get("app.test")
    assert (denied.status_code, denied.headers["www-authenticate"]) == (401, 'Bearer realm="test"')
    allowed = get("app.test", "user:alice:staff", **{"X-User": "root", "X-Auth-User": "root"})
    assert allowed.status_code == 200
    seen = backend.requests[-1].header_list
    assert [item for item in seen if item[0] in ("x-user", "x-groups", "x-auth-user")] == [
        ("x-user", "alice"),
        ("x-groups", "staff"),
        ("x-auth-user", "alice"),
    ]
    assert auth.calls[-1].headers["x-original-url"] == "http://app.test/p?q=1"
    assert get("open.test", **{"X-User": "root"}).status_code == 200
    assert "x-user" not in backend.requests[-1].headers

    down = get("down.test", "user:alice")
    assert (down.status_code, down.json()["error"]) == (503, "auth_service_unavailable")
    wait_until(lambda: "the auth service failed" in process.log(), message="the failure in the log")
    broken = get("broken.test", "user:alice")
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")

    routes = httpx.get(f"{process.admin_url}/routes").json()
    assert "ftp:// is not supported" in json.dumps(routes["rejected"])
    assert {"x-user", "x-groups", "x-auth-user"} <= set(routes["stripped_request_headers"])

    assert process.stop() == 0
    log = process.log()
    assert "Traceback" not in log
    assert "Unclosed" not in log
