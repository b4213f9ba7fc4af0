"""forward-auth against hostile clients and a misbehaving auth service: never a 500, never a leak."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from forward_auth_service import HUGE_BODY_BYTES, AuthService, guarded_ingress
from gateway_plugin_forward_auth.config import MAX_BODY_BYTES

from gateway_core.testing import InProcessGateway, RecordingUpstream, ingress, path, routed_service, write_manifests

PROFILE = {"upstream_headers": ["X-User", "X-Groups"], "identity_from": "X-User"}


@pytest.fixture
def auth() -> Iterator[AuthService]:
    with AuthService() as service:
        yield service


@pytest.fixture
def gateway(
    auth: AuthService,
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream]:
    backend = upstream("api")
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            guarded_ingress("profile", "profile.test", {"url": auth.url, **PROFILE}),
            guarded_ingress("cached", "cached.test", {"url": auth.url, **PROFILE, "cache_ttl": 60}),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return in_process_gateway(manifests=manifests_dir), backend


def _get(gw: InProcessGateway, host: str, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{gw.url}/x", headers={"Host": host, **headers})


def _answer(auth: AuthService, token: str, head: bytes, body: bytes = b"") -> None:
    auth.raw_answers[token] = head + b"Connection: close\r\n\r\n" + body


FORGED = {"X-User": "admin", "X-Groups": "root", "X-Auth-User": "admin"}


def test_forged_copies_of_the_owned_headers_are_stripped_on_every_route(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    assert _get(gw, "open.test", None, **FORGED).status_code == 200
    assert not {"x-user", "x-groups", "x-auth-user"} & set(backend.requests[-1].headers)
    assert _get(gw, "profile.test", "user:alice", **FORGED).status_code == 200
    seen = backend.requests[-1].header_list
    assert [item for item in seen if item[0] in ("x-user", "x-groups", "x-auth-user")] == [
        ("x-user", "alice"),
        ("x-auth-user", "alice"),
    ]


def test_forged_owned_headers_never_reach_the_auth_service_nor_split_the_cache(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    assert _get(gw, "cached.test", "user:alice").status_code == 200
    assert _get(gw, "cached.test", "user:alice", **FORGED).status_code == 200
    assert len(auth.calls) == 1
    assert "x-user" not in auth.calls[0].headers
    assert backend.requests[-1].headers["x-user"] == "alice"


def test_a_client_cannot_tell_the_auth_service_another_method_uri_or_host(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    lies = {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/public",
        "X-Original-URI": "/public",
        "X-Original-URL": "http://public.test/public",
        "X-Original-Method": "GET",
        "X-Forwarded-Host": "public.test",
    }
    response = httpx.delete(
        f"{gw.url}/admin", headers={"Host": "profile.test", "Authorization": "Bearer user:a", **lies}
    )
    assert response.status_code == 200
    told = auth.calls[-1].header_list
    assert [value for name, value in told if name in ("x-forwarded-method", "x-original-method")] == ["DELETE"] * 2
    assert [value for name, value in told if name in ("x-forwarded-uri", "x-original-uri")] == ["/admin"] * 2
    assert [value for name, value in told if name == "x-original-url"] == ["http://profile.test/admin"]
    assert [value for name, value in told if name == "x-forwarded-host"] == ["profile.test"]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-User: alice\rX-Groups: root\r\nContent-Length: 0\r\n",
        b"HTTP/1.1 200 OK\r\nX-User: al\x00ice\r\nContent-Length: 0\r\n",
        b"HTTP/1.1 200 OK\r\nX-User: alice\r\nX-User: bob\r\nContent-Length: 0\r\n",
        b"HTTP/1.1 200 OK\r\nX-User: alice\r\nX-Big: " + b"a" * 200_000 + b"\r\n",
        b"NOT HTTP AT ALL\r\n",
        b"",
    ],
    ids=["bare-cr", "nul", "two-identities", "huge-head", "garbage", "closed"],
)
def test_a_malformed_2xx_is_refused_with_503_and_nothing_goes_upstream(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService, head: bytes
) -> None:
    gw, backend = gateway
    auth.raw_answers["bad"] = head if head in (b"", b"NOT HTTP AT ALL\r\n") else head + b"Connection: close\r\n\r\n"
    response = _get(gw, "profile.test", "bad")
    assert response.status_code == 503
    assert response.json()["error"] in ("auth_service_error", "auth_service_unavailable")
    assert backend.requests == []


def test_a_header_the_auth_service_splits_with_a_bare_lf_injects_nothing_unasked(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    _answer(auth, "split", b"HTTP/1.1 200 OK\r\nX-User: alice\nX-Evil: 1\r\nContent-Length: 0\r\n")
    response = _get(gw, "profile.test", "split")
    assert response.status_code in (200, 503)
    if backend.requests:
        seen = backend.requests[-1].headers
        assert seen["x-user"] == "alice"
        assert "x-evil" not in seen


def test_a_huge_denial_body_is_cut_to_64_kib(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    response = _get(gw, "profile.test", "huge")
    assert response.status_code == 401
    assert len(response.content) == MAX_BODY_BYTES < HUGE_BODY_BYTES
    assert response.headers["content-length"] == str(MAX_BODY_BYTES)


def test_a_denial_with_an_odd_status_is_not_a_500(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    _answer(auth, "odd", b"HTTP/1.1 600 Whatever\r\nContent-Length: 0\r\n")
    _answer(auth, "teapot", b"HTTP/1.1 418 Teapot\r\nContent-Length: 5\r\n", b"short")
    assert _get(gw, "profile.test", "odd").status_code == 503
    teapot = _get(gw, "profile.test", "teapot")
    assert (teapot.status_code, teapot.content) == (418, b"short")
    assert backend.requests == []


def test_the_auth_service_sees_the_target_exactly_as_the_upstream_does(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    for target in (b'/caf%C3%A9/x?q=%ff&r="<x>"', b"/a/..%2f/b/./c?x", b"/raw\xff?\xfe"):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as conn:
            conn.sendall(
                b"GET " + target + b" HTTP/1.1\r\nHost: profile.test\r\n"
                b"Authorization: Bearer user:alice\r\nConnection: close\r\n\r\n"
            )
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        status = int(reply.split(b" ", 2)[1])
        assert status in (200, 400), reply
        if status == 200:
            assert auth.calls[-1].headers["x-forwarded-uri"] == backend.requests[-1].path
    assert backend.requests, "no target got through"


def test_an_overlong_credential_is_passed_on_without_harm(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    response = _get(gw, "profile.test", "user:" + "z" * 6000)
    assert response.status_code == 200
    assert auth.calls[-1].headers["authorization"].endswith("z" * 6000)
