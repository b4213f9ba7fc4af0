"""redirect through a real in-process gateway, real sockets and real upstreams."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    wait_until,
    write_manifests,
)

TRUSTED = {"server": {"trusted_proxies": ["127.0.0.1/32"]}}


def _route(name: str, host: str | None, config: dict[str, Any], route_path: str = "/", **kw: Any) -> dict[str, Any]:
    return ingress(
        name,
        rules=[(host, [path(route_path, "app", **kw)])],
        annotations=plugin_annotations({"redirect": config}),
    )


def _manifests(directory: Path, app: RecordingUpstream, docs: RecordingUpstream) -> None:
    write_manifests(
        directory,
        [
            *routed_service("app", app.port),
            *routed_service("docs", docs.port),
            _route("fixed", "fixed.test", {"to": "/maintenance"}),
            _route(
                "moved", "moved.test", {"to": "https://new.example.com/v2", "preserve_path": True, "code": 301}, "/old"
            ),
            _route("exact", "exact.test", {"to": "/new/?from=exact", "preserve_path": True}, "/old", path_type="Exact"),
            _route("root", "root.test", {"to": "/", "preserve_path": True, "code": 307}),
            _route("app", "app.test", {"app_root": "/dashboard"}),
            _route(
                "secure", "secure.test", {"https_redirect": True, "hsts": {"max_age": 600, "include_subdomains": True}}
            ),
            _route("port", "port.test", {"https_redirect": True, "https_port": 8443, "https_code": 301}),
            _route("hsts", "hsts.test", {"hsts": {}}),
            _route("temp", "temp.test", {"to": "https://status.example.com/", "code": 302, "hsts": {"max_age": 60}}),
            _route("any", None, {"https_redirect": True}),
            ingress("docs", rules=[("docs.test", [path("/", "docs")])]),
        ],
    )


@pytest.fixture
def start(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> Callable[..., tuple[InProcessGateway, RecordingUpstream, RecordingUpstream]]:
    """Start a gateway over two upstreams; ``trusted=True`` trusts 127.0.0.1 as a proxy."""

    def make(*, trusted: bool = False) -> tuple[InProcessGateway, RecordingUpstream, RecordingUpstream]:
        app, docs = upstream("app"), upstream("docs")
        _manifests(manifests_dir, app, docs)
        return in_process_gateway(manifests=manifests_dir, overrides=TRUSTED if trusted else {}), app, docs

    return make


def _get(gw: InProcessGateway, target: str, host: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{gw.url}{target}", headers={"Host": host, **headers})


def test_a_route_redirect_answers_308_with_a_relative_location_and_never_calls_upstream(start: Any) -> None:
    gw, app, docs = start()
    response = _get(gw, "/anything?x=1", "fixed.test")
    assert response.status_code == 308
    assert response.headers["location"] == "/maintenance"
    assert response.json() == {"location": "/maintenance"}
    post = httpx.post(f"{gw.url}/form", headers={"Host": "fixed.test"}, content=b"a=1")
    assert (post.status_code, post.headers["location"]) == (308, "/maintenance")
    assert _get(gw, "/", "docs.test").status_code == 200
    assert app.requests == []
    assert len(docs.requests) == 1


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/old", "https://new.example.com/v2"),
        ("/old/", "https://new.example.com/v2/"),
        ("/old/a/b?x=1&y=%2F&z=a+b", "https://new.example.com/v2/a/b?x=1&y=%2F&z=a+b"),
        ("/old/caf%C3%A9/%2F", "https://new.example.com/v2/caf%C3%A9/%2F"),
        ("/old//a///b", "https://new.example.com/v2/a/b"),
        ("/%6Fld/x", "https://new.example.com/v2/x"),
    ],
)
def test_preserve_path_appends_the_suffix_and_query_byte_for_byte(start: Any, target: str, location: str) -> None:
    gw, app, _ = start()
    response = _get(gw, target, "moved.test")
    assert (response.status_code, response.headers["location"]) == (301, location)
    assert app.requests == []


def test_an_exact_route_keeps_the_query_and_merges_it_with_the_targets(start: Any) -> None:
    gw, _, _ = start()
    response = _get(gw, "/old?a=1", "exact.test")
    assert (response.status_code, response.headers["location"]) == (308, "/new/?from=exact&a=1")
    assert _get(gw, "/old", "exact.test").headers["location"] == "/new/?from=exact"


def test_a_hostile_path_never_becomes_a_protocol_relative_location(start: Any) -> None:
    gw, _, _ = start()
    for target, location in [
        ("//evil.com", "/evil.com"),
        ("//evil.com/%2F", "/evil.com/%2F"),
        ("///evil.com/..//x", "/x"),
        ("/%5Cevil.com", "/%5Cevil.com"),
        ("/", "/"),
        ("/a?next=//evil.com", "/a?next=//evil.com"),
    ]:
        response = _get(gw, target, "root.test")
        assert (response.status_code, response.headers["location"]) == (307, location), target


def test_app_root_redirects_only_the_root_with_302_and_keeps_the_query(start: Any) -> None:
    gw, app, _ = start()
    root = _get(gw, "/", "app.test")
    assert (root.status_code, root.headers["location"]) == (302, "/dashboard")
    query = _get(gw, "/?lang=en", "app.test")
    assert query.headers["location"] == "/dashboard?lang=en"
    assert app.requests == []
    assert _get(gw, "/dashboard/x", "app.test").status_code == 200
    assert app.requests[-1].path == "/dashboard/x"


def test_plain_http_is_redirected_to_https_with_path_and_query(start: Any) -> None:
    gw, app, _ = start()
    response = _get(gw, "/a/b?x=1&y=%2F", "Secure.TEST:8080")
    assert response.status_code == 308
    assert response.headers["location"] == "https://secure.test/a/b?x=1&y=%2F"
    assert "strict-transport-security" not in response.headers
    port = _get(gw, "/p", "port.test")
    assert (port.status_code, port.headers["location"]) == (301, "https://port.test:8443/p")
    ipv6 = _get(gw, "/v6", "[::1]:8080")
    assert ipv6.headers["location"] == "https://[::1]/v6"
    assert app.requests == []


def test_acme_http01_challenges_are_not_redirected(start: Any) -> None:
    gw, app, _ = start()
    challenge = _get(gw, "/.well-known/acme-challenge/token-123", "secure.test")
    assert challenge.status_code == 200
    assert app.requests[-1].path == "/.well-known/acme-challenge/token-123"
    assert _get(gw, "/.well-known/acme-challenge", "secure.test").status_code == 308
    assert _get(gw, "/.well-known/other", "secure.test").status_code == 308


def test_a_client_cannot_claim_https_or_pick_the_host_without_a_trusted_proxy(start: Any) -> None:
    gw, app, _ = start()
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.com"}
    response = _get(gw, "/x", "secure.test", **forged)
    assert (response.status_code, response.headers["location"]) == (308, "https://secure.test/x")
    hsts = _get(gw, "/x", "hsts.test", **forged)
    assert hsts.status_code == 200
    assert "strict-transport-security" not in hsts.headers
    assert app.requests[-1].headers["x-forwarded-proto"] == "http"


def test_a_host_that_is_not_a_plain_name_gets_400_not_a_redirect(start: Any) -> None:
    gw, app, _ = start()
    with httpx.Client() as client:
        for host in ["evil.com@good.test", "good.test\\evil.com", "a b.test", "\u00e9vil.test", "x/y", "a.test:8080:1"]:
            request = client.build_request("GET", f"{gw.url}/x")
            request.headers["Host"] = host.encode("utf-8").decode("latin-1")
            response = client.send(request)
            assert response.status_code == 400, host
            assert "location" not in response.headers
            assert response.json()["error"] == "invalid_host", host
    assert app.requests == []


def test_behind_a_trusted_proxy_https_passes_and_gets_hsts(start: Any) -> None:
    gw, app, _ = start(trusted=True)
    via_tls = {"X-Forwarded-Proto": "https"}
    secure = _get(gw, "/x", "secure.test", **via_tls)
    assert secure.status_code == 200
    assert secure.headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    plain = _get(gw, "/x", "secure.test", **{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "public.test"})
    assert (plain.status_code, plain.headers["location"]) == (308, "https://public.test/x")
    assert "strict-transport-security" not in plain.headers
    assert _get(gw, "/y", "hsts.test", **via_tls).headers["strict-transport-security"] == "max-age=31536000"
    assert "strict-transport-security" not in _get(gw, "/y", "hsts.test").headers
    assert [request.path for request in app.requests] == ["/x", "/y", "/y"]


def test_hsts_replaces_the_upstreams_own_and_goes_on_https_redirects(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    app = upstream("app", extra_headers={"Strict-Transport-Security": "max-age=5"})
    docs = upstream("docs")
    _manifests(manifests_dir, app, docs)
    gw = in_process_gateway(manifests=manifests_dir, overrides=TRUSTED)
    response = _get(gw, "/", "hsts.test", **{"X-Forwarded-Proto": "https"})
    assert response.headers.get_list("strict-transport-security") == ["max-age=31536000"]
    redirect = _get(gw, "/", "temp.test", **{"X-Forwarded-Proto": "https"})
    assert (redirect.status_code, redirect.headers["location"]) == (302, "https://status.example.com/")
    assert redirect.headers["strict-transport-security"] == "max-age=60"
    plain = _get(gw, "/", "temp.test")
    assert plain.status_code == 302
    assert "strict-transport-security" not in plain.headers


def test_hsts_goes_on_the_gateways_own_answers_to_https_requests(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    write_manifests(
        manifests_dir,
        [
            *routed_service("dead", upstream("app").port),
            ingress(
                "dead",
                rules=[("dead.test", [path("/", "dead")])],
                annotations=plugin_annotations({"redirect": {"hsts": {"max_age": 120}}}),
            ),
        ],
    )
    gw = in_process_gateway(manifests=manifests_dir, overrides=TRUSTED)
    upstream_answer = _get(gw, "/", "dead.test", **{"X-Forwarded-Proto": "https"})
    assert upstream_answer.headers.get_list("strict-transport-security") == ["max-age=120"]
    write_manifests(
        manifests_dir,
        [
            *routed_service("dead", free_port()),
            ingress(
                "dead",
                rules=[("dead.test", [path("/", "dead")])],
                annotations=plugin_annotations({"redirect": {"hsts": {"max_age": 120}}}),
            ),
        ],
    )
    wait_until(lambda: _get(gw, "/", "dead.test").status_code == 502, message="the endpoint change")
    failed = _get(gw, "/", "dead.test", **{"X-Forwarded-Proto": "https"})
    assert failed.status_code == 502
    assert failed.headers.get_list("strict-transport-security") == ["max-age=120"]
    assert "strict-transport-security" not in _get(gw, "/", "dead.test").headers  # plain HTTP: never
