"""basic-auth in a real in-process gateway, in front of a real upstream."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import bcrypt
import gateway_plugin_basic_auth
import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)

CHALLENGE = 'Basic realm="Staff only", charset="UTF-8"'


def bcrypt_entry(user: str, password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed.replace('$2b$', '$2y$')}"  # as `htpasswd -B` writes it


def sha_entry(user: str, password: str) -> str:
    return f"{user}:{{SHA}}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def write_site(directory: Path, upstream: RecordingUpstream, htpasswd: str) -> None:
    write_manifests(
        directory,
        [
            *routed_service("api", upstream.port),
            secret("staff", {"auth": htpasswd}),
            ingress(
                "api",
                rules=[(None, [path("/", "api")])],
                annotations=plugin_annotations({"basic-auth": {"secret": "staff", "realm": "Staff only"}}),
            ),
            ingress(
                "forwarding",
                rules=[("fwd.test", [path("/", "api")])],
                annotations=plugin_annotations(
                    {"basic-auth": {"secret": "staff", "forward_authorization": True, "identity_header": "X-Staff"}}
                ),
            ),
        ],
    )


USERS = "\n".join([bcrypt_entry("alice", "alice-pw"), sha_entry("bob", "bob-pw"), bcrypt_entry("jürgen", "pässwort")])


@pytest.fixture
def gateway(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream, Path]:
    backend = upstream("api")
    write_site(manifests_dir, backend, USERS)
    return (
        in_process_gateway(
            # only this plugin: the suite must not depend on other installed distributions
            manifests=manifests_dir,
            plugins=[gateway_plugin_basic_auth],
            load_entry_points=False,
        ),
        backend,
        manifests_dir,
    )


def test_no_credentials_get_a_401_challenge_and_never_reach_the_upstream(
    gateway: tuple[InProcessGateway, RecordingUpstream, Path],
) -> None:
    gw, backend, _ = gateway
    response = httpx.get(f"{gw.url}/x")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json() == {"error": "unauthorized", "message": "credentials are required"}
    assert backend.requests == []


@pytest.mark.parametrize(("user", "password"), [("alice", "alice-pw"), ("bob", "bob-pw"), ("jürgen", "pässwort")])
def test_a_good_password_passes_as_its_user_without_the_credentials(
    gateway: tuple[InProcessGateway, RecordingUpstream, Path], user: str, password: str
) -> None:
    gw, backend, _ = gateway
    response = httpx.get(f"{gw.url}/x", auth=(user, password))
    assert response.status_code == 200
    seen = backend.requests[-1]
    assert seen.headers["x-auth-user"] == user
    assert "authorization" not in seen.headers


def test_forward_authorization_keeps_the_header_and_the_identity_goes_where_configured(
    gateway: tuple[InProcessGateway, RecordingUpstream, Path],
) -> None:
    gw, backend, _ = gateway
    refused = httpx.get(f"{gw.url}/x", headers={"Host": "fwd.test"})
    assert refused.headers["www-authenticate"] == 'Basic realm="Restricted", charset="UTF-8"'
    response = httpx.get(f"{gw.url}/x", headers={"Host": "fwd.test"}, auth=("alice", "alice-pw"))
    assert response.status_code == 200
    seen = backend.requests[-1]
    assert seen.headers["x-staff"] == "alice"
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"alice:alice-pw").decode()


def test_a_rotated_password_takes_effect_and_the_cache_does_not_outlive_it(
    gateway: tuple[InProcessGateway, RecordingUpstream, Path],
) -> None:
    gw, backend, manifests = gateway
    assert httpx.get(f"{gw.url}/x", auth=("alice", "alice-pw")).status_code == 200  # now cached
    write_site(manifests, backend, bcrypt_entry("alice", "new-pw"))

    def rotated() -> bool:
        return httpx.get(f"{gw.url}/x", auth=("alice", "new-pw")).status_code == 200

    wait_until(rotated, message="the new password to be accepted")
    assert httpx.get(f"{gw.url}/x", auth=("alice", "alice-pw")).status_code == 401
    assert httpx.get(f"{gw.url}/x", auth=("bob", "bob-pw")).status_code == 401
