"""rewrite through a real ``gateway run`` process with several real upstreams."""

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
def test_gateway_run_rewrites_per_route_and_rejects_a_dangerous_regex(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    users, files, plain = upstream("users"), upstream("files"), upstream("plain")
    write_manifests(
        manifests_dir,
        [
            *routed_service("users", users.port),
            *routed_service("files", files.port),
            *routed_service("plain", plain.port),
            ingress(
                "users",
                rules=[(None, [path("/api/users", "users")])],
                annotations=plugin_annotations(
                    {"rewrite": {"regex": r"^/api/users/(\d+)$", "replacement": "/v2/user?id=$1"}}
                ),
            ),
            ingress(
                "files",
                rules=[(None, [path("/api/files", "files")])],
                annotations=plugin_annotations({"rewrite": {"strip_prefix": "/api"}}),
            ),
            ingress("plain", rules=[(None, [path("/", "plain")])]),
            ingress(
                "evil",
                rules=[("evil.test", [path("/", "plain")])],
                annotations=plugin_annotations({"rewrite": {"regex": "^/(a+)+$", "replacement": "/$1"}}),
            ),
        ],
    )
    process = gateway_process(manifests_dir)

    assert httpx.get(f"{process.url}/api/users/7?fields=name").status_code == 200
    assert users.requests[-1].path == "/v2/user?id=7&fields=name"
    assert httpx.get(f"{process.url}/api/users/me").status_code == 200
    assert users.requests[-1].path == "/api/users/me"  # no match: unchanged

    assert httpx.get(f"{process.url}/api/files/a%2Fb/c%20d?x=1").status_code == 200
    assert files.requests[-1].path == "/files/a%2Fb/c%20d?x=1"

    assert httpx.get(f"{process.url}/api/other").status_code == 200
    assert plain.requests[-1].path == "/api/other"  # no rewrite bound on this route

    evil = httpx.get(f"{process.url}/aaaa", headers={"Host": "evil.test"})
    assert (evil.status_code, evil.json()["error"]) == (503, "route_unavailable")
    assert len(plain.requests) == 1
    rejected = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "nests an unbounded repeat" in rejected
