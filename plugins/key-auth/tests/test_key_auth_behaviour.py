"""key-auth through a real gateway (in-process and ``gateway run``) and a real upstream."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

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

KEYS = secret("api-keys", {"alice": "alice-key-1\nalice-key-2", "bob": "bob-key"})


def _manifests(directory: Path, upstream: RecordingUpstream, config: dict[str, Any]) -> Path:
    write_manifests(
        directory,
        [
            *routed_service("api", upstream.port),
            KEYS,
            ingress(
                "api",
                rules=[(None, [path("/", "api")])],
                annotations=plugin_annotations({"key-auth": config}),
            ),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return directory


@pytest.fixture
def gateway(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream]:
    backend = upstream("api")
    _manifests(manifests_dir, backend, {"secret": "api-keys", "query_param": "api_key"})
    return in_process_gateway(manifests=manifests_dir), backend


def test_no_key_and_a_wrong_key_get_401_and_never_reach_the_upstream(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    missing = httpx.get(f"{gw.url}/x")
    wrong = httpx.get(f"{gw.url}/x", headers={"X-API-Key": "nope"})
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized")
    assert wrong.status_code == 401
    assert "not valid" in wrong.json()["message"]
    assert backend.requests == []


def test_a_valid_key_passes_as_its_consumer_and_the_key_is_not_forwarded(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = httpx.get(f"{gw.url}/x", headers={"X-API-Key": "alice-key-2"})
    assert response.status_code == 200
    seen = backend.requests[-1]
    assert seen.headers["x-auth-user"] == "alice"
    assert "x-api-key" not in seen.headers


def test_the_key_in_the_query_is_removed_and_other_parameters_kept_raw(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = httpx.get(f"{gw.url}/x?a=1&api_key=bob-key&b=%2F")
    assert response.status_code == 200
    assert backend.requests[-1].path == "/x?a=1&b=%2F"
    assert backend.requests[-1].headers["x-auth-user"] == "bob"


def test_a_forged_identity_header_is_stripped_on_every_route(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    forged = {"X-Auth-User": "admin"}
    assert httpx.get(f"{gw.url}/x", headers=forged).status_code == 401
    open_route = httpx.get(f"{gw.url}/x", headers={**forged, "Host": "open.test"})
    assert open_route.status_code == 200
    assert "x-auth-user" not in backend.requests[-1].headers
    authed = httpx.get(f"{gw.url}/x", headers={**forged, "X-API-Key": "bob-key"})
    assert authed.status_code == 200
    assert backend.requests[-1].header_list.count(("x-auth-user", "bob")) == 1
    assert ("x-auth-user", "admin") not in backend.requests[-1].header_list


def test_two_key_headers_are_ambiguous_and_refused(gateway: tuple[InProcessGateway, RecordingUpstream]) -> None:
    gw, backend = gateway
    response = httpx.get(f"{gw.url}/x", headers=[("X-API-Key", "bob-key"), ("X-API-Key", "nope")])
    assert response.status_code == 401
    assert backend.requests == []


@pytest.mark.e2e
def test_gateway_run_binds_it_and_rejects_a_missing_secret(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    backend = upstream("api")
    _manifests(manifests_dir, backend, {"secret": "api-keys"})
    write_manifests(
        manifests_dir,
        [
            ingress(
                "broken",
                rules=[("broken.test", [path("/", "api")])],
                annotations=plugin_annotations({"key-auth": {"secret": "no-such-secret"}}),
            )
        ],
        filename="broken.yaml",
    )
    process = gateway_process(manifests_dir)
    assert httpx.get(f"{process.url}/").status_code == 401
    assert httpx.get(f"{process.url}/", headers={"X-API-Key": "alice-key-1"}).status_code == 200
    broken = httpx.get(f"{process.url}/", headers={"Host": "broken.test", "X-API-Key": "alice-key-1"})
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    routes = httpx.get(f"{process.admin_url}/routes").json()
    reasons = json.dumps(routes["rejected"])
    assert "no-such-secret" in reasons
    assert "x-auth-user" in routes["stripped_request_headers"]
