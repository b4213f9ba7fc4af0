"""basic-auth through a real ``gateway run`` process, found through its installed entry point."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    write_manifests,
)

APR1_HASH = "$apr1$3bMmRw7N$9y3Ov0xhD4xnfHtGm1vyO0"


@pytest.mark.e2e
def test_gateway_run_checks_bcrypt_and_sha_users_and_rejects_what_it_cannot_check(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    backend = upstream("api")
    bcrypt_hash = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")
    sha_hash = "{SHA}" + base64.b64encode(hashlib.sha1(b"bob-pw").digest()).decode()
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            secret("staff", {"auth": f"alice:{bcrypt_hash}\nbob:{sha_hash}\n"}),
            secret("legacy", {"auth": f"alice:{bcrypt_hash}\ncarol:{APR1_HASH}\n"}),
            ingress(
                "api",
                rules=[(None, [path("/", "api")])],
                annotations=plugin_annotations({"basic-auth": {"secret": "staff", "realm": "Staff"}}),
            ),
            ingress(
                "legacy",
                rules=[("legacy.test", [path("/", "api")])],
                annotations=plugin_annotations({"basic-auth": {"secret": "legacy"}}),
            ),
            ingress(
                "wrong-key",
                rules=[("wrong-key.test", [path("/", "api")])],
                annotations=plugin_annotations({"basic-auth": {"secret": "staff", "secret_key": "users"}}),
            ),
        ],
    )
    process = gateway_process(manifests_dir)

    refused = httpx.get(f"{process.url}/x", headers={"X-Auth-User": "admin"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="Staff", charset="UTF-8"'
    assert httpx.get(f"{process.url}/x", auth=("alice", "bob-pw")).status_code == 401
    assert httpx.get(f"{process.url}/x", headers={"Authorization": "Basic %%%"}).status_code == 401
    assert backend.requests == []

    for user, password in [("alice", "alice-pw"), ("alice", "alice-pw"), ("bob", "bob-pw")]:
        response = httpx.get(f"{process.url}/x", headers={"X-Auth-User": "admin"}, auth=(user, password))
        assert response.status_code == 200
        seen = backend.requests[-1]
        assert [value for name, value in seen.header_list if name == "x-auth-user"] == [user]
        assert "authorization" not in seen.headers

    for host in ("legacy.test", "wrong-key.test"):
        broken = httpx.get(f"{process.url}/x", headers={"Host": host}, auth=("alice", "alice-pw"))
        assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    routes = httpx.get(f"{process.admin_url}/routes").json()
    reasons = json.dumps(routes["rejected"])
    assert "line 2 (user 'carol'): apr1-MD5 hashes are not supported" in reasons
    assert "has no key 'users'" in reasons
    assert APR1_HASH[6:] not in reasons
    assert "x-auth-user" in routes["stripped_request_headers"]
