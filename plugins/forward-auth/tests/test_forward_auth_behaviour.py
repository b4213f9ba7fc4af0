"""forward-auth through an in-process gateway, a real auth service and a real upstream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from forward_auth_service import AuthService, guarded_ingress
from gateway_plugin_forward_auth.client import CLIENTS

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    routed_service,
    wait_until,
    write_manifests,
)

PROFILE = {"upstream_headers": ["X-User", "X-Groups"], "identity_from": "X-User"}


@pytest.fixture
def auth() -> Iterator[AuthService]:
    with AuthService(delay=1.5) as service:
        yield service


@pytest.fixture
def gateway(
    auth: AuthService,
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream]:
    backend = upstream("api")
    url = auth.url
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", backend.port),
            guarded_ingress("plain", "plain.test", {"url": url}),
            guarded_ingress("profile", "profile.test", {"url": url, **PROFILE}),
            guarded_ingress("cached", "cached.test", {"url": url, **PROFILE, "cache_ttl": 60}),
            guarded_ingress(
                "who", "who.test", {"url": url, **PROFILE, "cache_ttl": 60, "cache_key_includes_uri": False}
            ),
            guarded_ingress("brief", "brief.test", {"url": url, "cache_ttl": 0.2}),
            guarded_ingress("slow", "slow.test", {"url": url, "timeout": 0.3}),
            guarded_ingress("down", "down.test", {"url": f"http://127.0.0.1:{free_port()}/verify"}),
            ingress("open", rules=[("open.test", [path("/", "api")])]),
        ],
    )
    return in_process_gateway(manifests=manifests_dir), backend


def _get(
    gw: InProcessGateway, host: str, target: str = "/x", token: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(kwargs.pop("method", "GET"), f"{gw.url}{target}", headers=headers, **kwargs)


def test_a_401_is_relayed_with_its_challenge_and_body_and_nothing_else(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    response = _get(gw, "plain.test")
    assert response.status_code == 401
    assert response.json() == {"error": "who are you"}
    assert response.headers["www-authenticate"] == 'Bearer realm="test"'
    assert response.headers["content-type"] == "application/json"
    assert "x-internal" not in response.headers
    assert len(auth.calls) == 1
    assert backend.requests == []


def test_a_login_redirect_and_a_403_reach_the_client_as_the_auth_service_sent_them(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    redirect = _get(gw, "plain.test", "/app?page=2", token="login", follow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://login.test/?rd=http://plain.test/app?page=2"
    assert redirect.headers.get_list("set-cookie") == ["csrf=1; HttpOnly", "flow=abc; HttpOnly"]
    assert redirect.text == "<a href='https://login.test/'>log in</a>"
    assert "x-internal" not in redirect.headers
    forbidden = _get(gw, "plain.test", token="forbidden")
    assert (forbidden.status_code, forbidden.json()) == (403, {"error": "forbidden"})
    assert backend.requests == []


def test_the_auth_service_sees_credentials_method_and_uri_but_never_the_body(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    response = _get(
        gw,
        "plain.test",
        "/orders/7?expand=a%2Fb",
        token="user:alice",
        method="POST",
        content=b"secret payload",
        headers={"Cookie": "session=s1", "X-Other": "not forwarded"},
    )
    assert response.status_code == 200
    (call,) = auth.calls
    assert (call.method, call.path) == ("GET", "/verify")
    assert call.headers["authorization"] == "Bearer user:alice"
    assert call.headers["cookie"] == "session=s1"
    assert call.headers["x-forwarded-method"] == call.headers["x-original-method"] == "POST"
    assert call.headers["x-forwarded-uri"] == call.headers["x-original-uri"] == "/orders/7?expand=a%2Fb"
    assert call.headers["x-original-url"] == "http://plain.test/orders/7?expand=a%2Fb"
    assert call.headers["x-forwarded-host"] == "plain.test"
    assert call.headers["x-forwarded-proto"] == "http"
    assert call.headers["x-forwarded-for"] == "127.0.0.1"
    assert "x-other" not in call.headers
    assert "content-length" not in call.headers
    assert "transfer-encoding" not in call.headers
    seen = backend.requests[-1]
    assert (seen.method, seen.body) == ("POST", b"secret payload")
    assert seen.headers["authorization"] == "Bearer user:alice"  # the credentials still go upstream


def test_a_2xx_copies_the_chosen_headers_and_the_identity_upstream(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = _get(gw, "profile.test", token="user:alice:admins,dev")
    assert response.status_code == 200
    seen = backend.requests[-1].headers
    assert (seen["x-user"], seen["x-groups"], seen["x-auth-user"]) == ("alice", "admins,dev", "alice")
    assert "x-internal" not in seen
    plain = _get(gw, "plain.test", token="user:bob")
    assert plain.status_code == 200
    assert not {"x-user", "x-auth-user"} & set(backend.requests[-1].headers)


def test_a_2xx_without_the_identity_header_is_refused_with_503(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    auth.raw_answers["anonymous"] = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    response = _get(gw, "profile.test", token="anonymous")
    assert (response.status_code, response.json()["error"]) == (503, "auth_service_error")
    assert backend.requests == []


def test_an_auth_service_error_becomes_503_without_its_body(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = _get(gw, "plain.test", token="error")
    assert (response.status_code, response.json()["error"]) == (503, "auth_service_unavailable")
    assert "Traceback" not in response.text
    assert backend.requests == []


def test_a_slow_auth_service_fails_closed_with_503_at_the_timeout(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    started = time.monotonic()
    response = _get(gw, "slow.test", token="slow")
    assert time.monotonic() - started < 1.2
    assert (response.status_code, response.json()["error"]) == (503, "auth_service_unavailable")
    assert backend.requests == []


def test_an_unreachable_auth_service_fails_closed_with_503(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    response = _get(gw, "down.test", token="user:alice")
    assert (response.status_code, response.json()["error"]) == (503, "auth_service_unavailable")
    assert backend.requests == []


def test_the_cache_reuses_a_2xx_per_credentials_and_uri_but_never_a_denial(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, backend = gateway
    for _ in range(3):
        assert _get(gw, "cached.test", "/a", token="user:alice").status_code == 200
    assert len(auth.calls) == 1
    assert backend.requests[-1].headers["x-auth-user"] == "alice"  # the cached grant is applied too
    assert _get(gw, "cached.test", "/a", token="user:bob").status_code == 200
    assert _get(gw, "cached.test", "/b", token="user:alice").status_code == 200
    assert len(auth.calls) == 3
    for _ in range(2):
        assert _get(gw, "cached.test", "/a", token="nobody").status_code == 401
    assert len(auth.calls) == 5


def test_without_the_uri_in_the_key_the_caller_alone_decides(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    for target in ("/a", "/b?x=1", "/c"):
        assert _get(gw, "who.test", target, token="user:carol").status_code == 200
    assert len(auth.calls) == 1


def test_cached_answers_expire_after_the_ttl(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    assert _get(gw, "brief.test", token="user:dave").status_code == 200
    assert _get(gw, "brief.test", token="user:dave").status_code == 200
    assert len(auth.calls) == 1
    wait_until(lambda: _get(gw, "brief.test", token="user:dave").status_code == 200 and len(auth.calls) > 1)


def test_no_store_answers_are_not_cached(
    gateway: tuple[InProcessGateway, RecordingUpstream], auth: AuthService
) -> None:
    gw, _ = gateway
    auth.raw_answers["fresh"] = (
        b"HTTP/1.1 200 OK\r\nCache-Control: private, no-store\r\nX-User: erin\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    for _ in range(2):
        assert _get(gw, "cached.test", token="fresh").status_code == 200
    assert len(auth.calls) == 2


def test_the_shared_client_is_closed_when_the_gateway_stops(
    auth: AuthService, upstream: Callable[..., RecordingUpstream], manifests_dir: Path
) -> None:
    backend = upstream("api")
    write_manifests(
        manifests_dir, [*routed_service("api", backend.port), guarded_ingress("a", None, {"url": auth.url})]
    )
    before = len(CLIENTS)
    with InProcessGateway(manifests=manifests_dir) as gw:
        assert httpx.get(f"{gw.url}/", headers={"Authorization": "Bearer user:x"}).status_code == 200
        assert len(CLIENTS) == before + 1
    assert len(CLIENTS) == before
