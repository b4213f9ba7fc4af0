"""cors through a real gateway (in-process and ``gateway run``) and real upstream servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    InProcessGateway,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    write_manifests,
)

APP = "https://app.example.com"
POLICY: dict[str, Any] = {
    "allow_origins": [APP, "https://*.example.com", "http://localhost:3000"],
    "allow_methods": ["GET", "POST", "PUT", "DELETE"],
    "allow_headers": ["Authorization", "Content-Type", "X-Request-Id"],
    "expose_headers": ["X-Request-Id", "X-Total-Count"],
    "allow_credentials": True,
    "max_age": 120,
}
PUBLIC: dict[str, Any] = {
    "allow_origins": "*",
    "allow_methods": "*",
    "allow_headers": "*",
    "expose_headers": "*",
    "max_age": None,
}
LEGACY_HEADERS = {
    "Vary": "Accept-Encoding",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "*",
    "Access-Control-Allow-Credentials": "true",
}

Backends = dict[str, RecordingUpstream]


def _manifests(directory: Path, backends: Backends) -> None:
    write_manifests(
        directory,
        [
            *routed_service("api", backends["api"].port),
            *routed_service("legacy", backends["legacy"].port),
            *routed_service("public", backends["public"].port),
            *routed_service("down", free_port()),  # nothing listens: the gateway answers 502
            secret("api-keys", {"alice": "alice-key"}),
            ingress(
                "api",
                rules=[(None, [path("/", "api"), path("/legacy", "legacy")])],
                annotations=plugin_annotations({"cors": POLICY}),
            ),
            ingress(
                "public",
                rules=[("public.test", [path("/", "public")])],
                annotations=plugin_annotations({"cors": PUBLIC}),
            ),
            ingress(
                "down",
                rules=[("down.test", [path("/", "down")])],
                annotations=plugin_annotations({"cors": POLICY}),
            ),
            ingress(
                "keys-only",
                rules=[("keys-only.test", [path("/", "api")])],
                annotations=plugin_annotations({"key-auth": {"secret": "api-keys"}}),
            ),
            ingress(
                "private",
                rules=[("private.test", [path("/", "api")])],
                annotations=plugin_annotations({"key-auth": {"secret": "api-keys"}, "cors": POLICY}),
            ),
        ],
    )


def _start_backends(start: Callable[..., RecordingUpstream]) -> Backends:
    return {
        "api": start("api"),
        "legacy": start("legacy", extra_headers=LEGACY_HEADERS),
        "public": start("public"),
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessGateway, Backends]]:
    """One gateway and its upstreams for the whole module: starting them is most of a test's time."""
    started: list[RecordingUpstream] = []

    def start(name: str, **options: Any) -> RecordingUpstream:
        started.append(RecordingUpstream(name=name, **options).start())
        return started[-1]

    backends = _start_backends(start)
    directory = tmp_path_factory.mktemp("manifests")
    _manifests(directory, backends)
    try:
        with InProcessGateway(manifests=directory) as gw:
            yield gw, backends
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def backends(shared: tuple[InProcessGateway, Backends]) -> Backends:
    """The shared upstreams, with what earlier tests sent them forgotten."""
    for backend in shared[1].values():
        backend.requests.clear()
    return shared[1]


@pytest.fixture
def gateway(shared: tuple[InProcessGateway, Backends], backends: Backends) -> InProcessGateway:
    return shared[0]


def _preflight(
    gw: InProcessGateway, origin: str | None = APP, method: str = "PUT", headers: str | None = None, **extra: str
) -> httpx.Response:
    sent: list[tuple[str, str]] = [("Access-Control-Request-Method", method)]
    if origin is not None:
        sent.append(("Origin", origin))
    if headers is not None:
        sent.append(("Access-Control-Request-Headers", headers))
    sent += list(extra.items())
    return httpx.options(f"{gw.url}/orders", headers=sent)


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


def _no_request_reached(backends: Backends) -> bool:
    return all(not backend.requests for backend in backends.values())


def test_an_allowed_preflight_is_answered_by_the_gateway(gateway: InProcessGateway, backends: Backends) -> None:
    response = _preflight(gateway, headers="Content-Type, X-Request-Id")
    assert response.status_code == 204
    assert response.content == b""
    assert _cors_headers(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST, PUT, DELETE",
        "access-control-allow-headers": "content-type, x-request-id",
        "access-control-allow-credentials": "true",
        "access-control-max-age": "120",
    }
    assert response.headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert _no_request_reached(backends)


def test_a_preflight_without_requested_headers_names_none(gateway: InProcessGateway) -> None:
    response = _preflight(gateway, origin="https://shop.example.com", method="DELETE")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "access-control-allow-headers" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.com",
        "https://evil-example.com",
        "https://a.b.example.com",
        "https://example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
        "not an origin",
        "https://" + "a" * 5000 + ".example.com",
    ],
)
def test_a_preflight_from_a_foreign_origin_is_refused(
    gateway: InProcessGateway, backends: Backends, origin: str
) -> None:
    response = _preflight(gateway, origin=origin)
    assert (response.status_code, response.json()["error"]) == (403, "cors_forbidden")
    assert "origin" in response.json()["message"]
    assert _cors_headers(response) == {}
    assert "Access-Control-Request-Method" in response.headers["vary"]
    assert _no_request_reached(backends)


@pytest.mark.parametrize(
    ("method", "headers", "named"),
    [
        ("PATCH", None, "method PATCH"),
        ("put", None, "method put"),
        ("PUT", "Content-Type, X-Evil", "header x-evil"),
        ("PUT", "Cookie", "header cookie"),
    ],
)
def test_a_preflight_for_a_method_or_header_not_allowed_is_refused(
    gateway: InProcessGateway, backends: Backends, method: str, headers: str | None, named: str
) -> None:
    response = _preflight(gateway, method=method, headers=headers)
    assert response.status_code == 403
    assert named in response.json()["message"]
    assert _cors_headers(response) == {}
    assert _no_request_reached(backends)


def test_origin_case_and_the_default_port_do_not_matter_and_are_echoed_as_sent(gateway: InProcessGateway) -> None:
    for origin in ("HTTPS://App.Example.com", "https://app.example.com:443"):
        response = _preflight(gateway, origin=origin)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == origin


def test_an_allowed_actual_request_gets_the_cors_headers(gateway: InProcessGateway, backends: Backends) -> None:
    response = httpx.get(f"{gateway.url}/orders", headers={"Origin": "https://shop.example.com"})
    assert response.status_code == 200
    assert _cors_headers(response) == {
        "access-control-allow-origin": "https://shop.example.com",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Request-Id, X-Total-Count",
    }
    assert response.headers.get_list("vary") == ["Origin"]
    assert backends["api"].requests[-1].headers["origin"] == "https://shop.example.com"


def test_a_foreign_origin_is_forwarded_without_cors_headers(gateway: InProcessGateway, backends: Backends) -> None:
    response = httpx.post(f"{gateway.url}/orders", headers={"Origin": "https://a.b.example.com"}, content=b"{}")
    assert response.status_code == 200
    assert _cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"
    assert backends["api"].requests[-1].method == "POST"


def test_a_request_without_origin_is_untouched_except_vary(gateway: InProcessGateway, backends: Backends) -> None:
    response = httpx.get(f"{gateway.url}/orders?page=2")
    assert response.status_code == 200
    assert _cors_headers(response) == {}
    assert response.headers["vary"] == "Origin"
    assert response.json()["path"] == "/orders?page=2"
    assert backends["api"].requests[-1].path == "/orders?page=2"


def test_upstream_cors_headers_are_replaced_and_its_vary_is_merged(
    gateway: InProcessGateway, backends: Backends
) -> None:
    allowed = httpx.get(f"{gateway.url}/legacy", headers={"Origin": APP})
    assert _cors_headers(allowed) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Request-Id, X-Total-Count",
    }
    assert allowed.headers.get_list("vary") == ["Accept-Encoding, Origin"]
    foreign = httpx.get(f"{gateway.url}/legacy", headers={"Origin": "https://evil.com"})
    assert _cors_headers(foreign) == {}
    assert foreign.headers["vary"] == "Accept-Encoding, Origin"
    assert len(backends["legacy"].requests) == 2


def test_options_without_a_requested_method_is_not_a_preflight(gateway: InProcessGateway, backends: Backends) -> None:
    response = httpx.options(f"{gateway.url}/orders", headers={"Origin": APP})
    assert response.status_code == 200
    assert response.json()["method"] == "OPTIONS"
    assert response.headers["access-control-allow-origin"] == APP
    no_origin = httpx.options(f"{gateway.url}/orders", headers={"Access-Control-Request-Method": "PUT"})
    assert no_origin.status_code == 200
    assert _cors_headers(no_origin) == {}
    assert len(backends["api"].requests) == 2


def test_the_any_origin_policy_answers_star_and_reflects_method_and_headers(
    gateway: InProcessGateway, backends: Backends
) -> None:
    host = {"Host": "public.test"}
    preflight = httpx.options(
        f"{gateway.url}/x",
        headers={
            **host,
            "Origin": "https://anyone.test",
            "Access-Control-Request-Method": "PROPFIND",
            "Access-Control-Request-Headers": "Authorization, X-Anything",
        },
    )
    assert preflight.status_code == 204
    assert _cors_headers(preflight) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "PROPFIND",
        "access-control-allow-headers": "authorization, x-anything",
    }
    actual = httpx.get(f"{gateway.url}/x", headers={**host, "Origin": "http://other.test:8080"})
    assert _cors_headers(actual) == {"access-control-allow-origin": "*", "access-control-expose-headers": "*"}
    null = httpx.get(f"{gateway.url}/x", headers={**host, "Origin": "null"})
    assert _cors_headers(null) == {}
    assert null.headers["vary"] == "Origin"
    assert len(backends["public"].requests) == 2


def test_a_preflight_needs_no_credentials_but_the_actual_request_does(
    gateway: InProcessGateway, backends: Backends
) -> None:
    host = {"Host": "private.test", "Origin": APP}
    preflight = httpx.options(
        f"{gateway.url}/x",
        headers={**host, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == "authorization"
    assert httpx.get(f"{gateway.url}/x", headers=host).status_code == 401
    assert _no_request_reached(backends)
    authed = httpx.get(f"{gateway.url}/x", headers={**host, "X-API-Key": "alice-key"})
    assert authed.status_code == 200
    assert authed.headers["access-control-allow-origin"] == APP


def test_answers_the_gateway_makes_itself_carry_the_cors_headers(gateway: InProcessGateway) -> None:
    unauthorized = httpx.get(f"{gateway.url}/x", headers={"Host": "private.test", "Origin": APP})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == APP
    assert unauthorized.headers["access-control-allow-credentials"] == "true"
    assert unauthorized.headers["vary"] == "Origin"
    down = httpx.get(f"{gateway.url}/x", headers={"Host": "down.test", "Origin": "https://shop.example.com"})
    assert down.status_code == 502
    assert down.headers["access-control-allow-origin"] == "https://shop.example.com"
    foreign = httpx.get(f"{gateway.url}/x", headers={"Host": "down.test", "Origin": "https://evil.com"})
    assert foreign.status_code == 502
    assert _cors_headers(foreign) == {}
    assert foreign.headers["vary"] == "Origin"
    refused = _preflight(gateway, origin="https://evil.com")
    assert _cors_headers(refused) == {}
    assert refused.headers.get_list("vary") == ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]


def test_cors_headers_never_leak_onto_another_routes_answers(gateway: InProcessGateway) -> None:
    """key-auth answers 401 with one shared response object; cors's edit must stay on its route."""
    assert httpx.get(f"{gateway.url}/x", headers={"Host": "private.test", "Origin": APP}).status_code == 401
    elsewhere = httpx.get(f"{gateway.url}/x", headers={"Host": "keys-only.test", "Origin": APP})
    assert elsewhere.status_code == 401
    assert _cors_headers(elsewhere) == {}
    assert "vary" not in elsewhere.headers


@pytest.mark.parametrize(
    "headers",
    [
        [("Origin", APP), ("Origin", "https://shop.example.com"), ("Access-Control-Request-Method", "GET")],
        [("Origin", APP), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Method", "PUT")],
        [("Origin", APP), ("Access-Control-Request-Method", "GET /admin")],
        [("Origin", APP), ("Access-Control-Request-Method", "")],
        [("Origin", APP), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "a b")],
        [("Origin", APP), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "x,(y)")],
        [
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", ",".join(f"x-{i}" for i in range(100))),
        ],
        [("Origin", "https://app.example.com."), ("Access-Control-Request-Method", "GET")],
        [(b"Origin", "https://ápp.example.com".encode("latin-1")), ("Access-Control-Request-Method", "GET")],
        [("Origin", "https://app.example.com:99999"), ("Access-Control-Request-Method", "GET")],
    ],
)
def test_hostile_preflights_get_a_403_never_a_500(
    gateway: InProcessGateway, backends: Backends, headers: list[tuple[Any, Any]]
) -> None:
    response = httpx.options(f"{gateway.url}/orders", headers=headers)
    assert (response.status_code, response.json()["error"]) == (403, "cors_forbidden")
    assert _cors_headers(response) == {}
    assert _no_request_reached(backends)


def test_two_origin_headers_on_an_actual_request_get_no_cors_headers(gateway: InProcessGateway) -> None:
    response = httpx.get(f"{gateway.url}/orders", headers=[("Origin", APP), ("Origin", APP)])
    assert response.status_code == 200
    assert _cors_headers(response) == {}


@pytest.mark.e2e
def test_gateway_run_applies_the_policy_and_rejects_star_with_credentials(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, gateway_process: Callable[..., GatewayProcess]
) -> None:
    backends = _start_backends(upstream)
    _manifests(manifests_dir, backends)
    write_manifests(
        manifests_dir,
        [
            ingress(
                "broken",
                rules=[("broken.test", [path("/", "api")])],
                annotations=plugin_annotations({"cors": {"allow_origins": "*", "allow_credentials": True}}),
            )
        ],
        filename="broken.yaml",
    )
    process = gateway_process(manifests_dir)
    preflight = httpx.options(
        f"{process.url}/orders",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-request-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert preflight.headers["access-control-allow-headers"] == "x-request-id"
    denied = httpx.options(
        f"{process.url}/orders", headers={"Origin": "https://evil.com", "Access-Control-Request-Method": "POST"}
    )
    assert denied.status_code == 403
    legacy = httpx.get(f"{process.url}/legacy/x", headers={"Origin": "https://shop.example.com"})
    assert legacy.json()["upstream"] == "legacy"
    assert legacy.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert legacy.headers["vary"] == "Accept-Encoding, Origin"
    public = httpx.get(f"{process.url}/", headers={"Host": "public.test", "Origin": "https://x.test"})
    assert (public.json()["upstream"], public.headers["access-control-allow-origin"]) == ("public", "*")
    assert not backends["api"].requests
    broken = httpx.options(
        f"{process.url}/", headers={"Host": "broken.test", "Origin": APP, "Access-Control-Request-Method": "GET"}
    )
    assert (broken.status_code, broken.json()["error"]) == (503, "route_unavailable")
    reasons = json.dumps(httpx.get(f"{process.admin_url}/routes").json()["rejected"])
    assert "allow_credentials" in reasons
