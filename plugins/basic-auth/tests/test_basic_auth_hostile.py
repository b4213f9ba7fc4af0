"""Hostile clients against basic-auth: forged identities, guesses, broken and oversized headers."""

from __future__ import annotations

import base64
from collections.abc import Iterator

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
    write_manifests,
)

PASSWORD = "correct horse battery staple"
HTPASSWD = "alice:" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
INVALID = "the user name or password is not valid"
MALFORMED = "the Authorization header does not hold Basic credentials"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessGateway, RecordingUpstream]]:
    """One gateway for the whole module: these tests only send requests, they change nothing."""
    backend = RecordingUpstream(name="api").start()
    manifests = tmp_path_factory.mktemp("manifests")
    write_manifests(
        manifests,
        [
            *routed_service("api", backend.port),
            secret("staff", {"auth": HTPASSWD}),
            ingress(
                "api",
                rules=[(None, [path("/", "api")])],
                annotations=plugin_annotations({"basic-auth": {"secret": "staff"}}),
            ),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    # only this plugin: the suite must not depend on other installed distributions
    gateway = InProcessGateway(manifests=manifests, plugins=[gateway_plugin_basic_auth], load_entry_points=False)
    try:
        yield gateway.start(), backend
    finally:
        gateway.stop()
        backend.stop()


@pytest.fixture
def gateway(site: tuple[InProcessGateway, RecordingUpstream]) -> tuple[InProcessGateway, RecordingUpstream]:
    site[1].requests.clear()
    return site


def assert_refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": message}
    assert response.headers["www-authenticate"] == 'Basic realm="Restricted", charset="UTF-8"'


def test_a_forged_identity_header_is_stripped_on_every_route(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    forged = {"X-Auth-User": "admin"}
    assert httpx.get(f"{gw.url}/x", headers=forged).status_code == 401
    assert httpx.get(f"{gw.url}/x", headers={**forged, "Host": "open.test"}).status_code == 200
    assert "x-auth-user" not in backend.requests[-1].headers
    authed = httpx.get(f"{gw.url}/x", headers=forged, auth=("alice", PASSWORD))
    assert authed.status_code == 200
    assert [value for name, value in backend.requests[-1].header_list if name == "x-auth-user"] == ["alice"]


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("alice", "wrong"),
        ("alice", PASSWORD + " "),
        ("alice", ""),
        ("Alice", PASSWORD),
        ("mallory", PASSWORD),
        ("admin", "admin"),
        ("ali\r\nce", PASSWORD),
        ("alice\x00", PASSWORD),
        ("alice", PASSWORD + "x" * 72),  # bcrypt would read only the first 72 bytes: refused, not truncated
    ],
)
def test_wrong_passwords_and_unknown_users_get_the_same_401(
    gateway: tuple[InProcessGateway, RecordingUpstream], user: str, password: str
) -> None:
    gw, backend = gateway
    assert_refused(httpx.get(f"{gw.url}/x", auth=(user, password)), INVALID)
    assert backend.requests == []


@pytest.mark.parametrize(
    "value",
    [
        "Bearer " + b64(b"alice:" + PASSWORD.encode()),
        "Basic",
        "Basic !!!!",
        "Basic " + b64(b"alice:" + PASSWORD.encode())[:-2],  # padding cut off
        "Basic " + b64(b"alice"),  # no colon
        "Basic " + b64(b":" + PASSWORD.encode()),  # no user
        "Basic " + b64(b"alice:\xff\xfe"),  # not UTF-8
        "Basic " + b64(b"\xe9:" + PASSWORD.encode()),  # Latin-1, not UTF-8
        "Basic " + b64(b"alice:" + PASSWORD.encode()) + " trailing",
        "Basic=" + b64(b"alice:" + PASSWORD.encode()),
    ],
)
def test_malformed_authorization_headers_get_401(
    gateway: tuple[InProcessGateway, RecordingUpstream], value: str
) -> None:
    gw, backend = gateway
    assert_refused(httpx.get(f"{gw.url}/x", headers={"Authorization": value}), MALFORMED)
    assert backend.requests == []


def test_raw_non_ascii_bytes_and_two_authorization_headers_get_401(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    raw = httpx.get(f"{gw.url}/x", headers={b"Authorization": b"Basic \xe9\xff\x80=="})
    assert_refused(raw, MALFORMED)
    good = "Basic " + b64(b"alice:" + PASSWORD.encode())
    twice = httpx.get(f"{gw.url}/x", headers=[("Authorization", good), ("Authorization", good)])
    assert_refused(twice, MALFORMED)
    assert backend.requests == []


def test_huge_authorization_headers_get_401_or_431_never_a_500(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    huge_password = "Basic " + b64(b"alice:" + b"p" * 40_000)
    assert_refused(httpx.get(f"{gw.url}/x", headers={"Authorization": huge_password}), MALFORMED)
    huge_user = "Basic " + b64(b"a" * 3000 + b":pw")  # under the length limit: an unknown user
    assert_refused(httpx.get(f"{gw.url}/x", headers={"Authorization": huge_user}), INVALID)
    beyond = httpx.get(f"{gw.url}/x", headers={"Authorization": "Basic " + "A" * 70_000})
    assert beyond.status_code == 431
    assert backend.requests == []
    assert httpx.get(f"{gw.url}/x", auth=("alice", PASSWORD)).status_code == 200
