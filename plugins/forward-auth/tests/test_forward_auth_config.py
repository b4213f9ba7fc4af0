"""forward-auth's config model, its answer checks and its cache, without a network."""

from __future__ import annotations

from typing import Any

import pytest
from gateway_plugin_forward_auth import SPEC, ForwardAuthConfig
from gateway_plugin_forward_auth.cache import TtlCache
from gateway_plugin_forward_auth.grant import AuthAnswerError, grant_from
from pydantic import ValidationError

from gateway_core import Headers, RequestContext, UpstreamRequest

URL = "http://auth.identity.svc:8080/verify?app=shop"


def test_defaults_forward_credentials_and_relay_challenges() -> None:
    config = ForwardAuthConfig.model_validate({"url": URL})
    assert config.request_headers == ["Authorization", "Cookie"]
    assert config.upstream_headers == []
    assert config.identity_from is None
    assert config.client_headers == ["WWW-Authenticate", "Location", "Set-Cookie"]
    assert (config.timeout, config.cache_ttl, config.cache_key_includes_uri) == (3.0, 0, True)
    assert config.identity_header == "X-Auth-User"
    assert SPEC.priority == 1900


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "url"),
        ({"url": "ftp://auth/verify"}, "http"),
        ({"url": "/verify"}, "http"),
        ({"url": "http:///verify"}, "no host"),
        ({"url": "https://user:pw@auth/verify"}, "credentials"),
        ({"url": "http://auth/verify#x"}, "fragment"),
        ({"url": "http://auth/ver ify"}, "spaces"),
        ({"url": "http://auth/\r\nX: 1"}, "control"),
        ({"url": "http://auth:99999/"}, "valid URL"),
        ({"url": "http://[::1/"}, "valid URL"),
        ({"url": URL, "request_headers": ["Host"]}, "set by the plugin"),
        ({"url": URL, "request_headers": ["X-Forwarded-For"]}, "set by the plugin"),
        ({"url": URL, "request_headers": ["Connection"]}, "hop-by-hop"),
        ({"url": URL, "request_headers": ["Cookie", "cookie"]}, "twice"),
        ({"url": URL, "request_headers": ["X Bad"]}, "request_headers"),
        ({"url": URL, "upstream_headers": ["Authorization"]}, "standard request header"),
        ({"url": URL, "upstream_headers": ["Cookie"]}, "standard request header"),
        ({"url": URL, "upstream_headers": ["Transfer-Encoding"]}, "hop-by-hop"),
        ({"url": URL, "upstream_headers": ["X-User\r\nEvil"]}, "upstream_headers"),
        ({"url": URL, "upstream_headers": ["X-User"], "request_headers": ["x-user"]}, "never reach"),
        ({"url": URL, "request_headers": ["X-Auth-User"]}, "never reach"),
        ({"url": URL, "upstream_headers": ["X-Auth-User"], "identity_from": "X-User"}, "one place"),
        ({"url": URL, "identity_header": "Authorization"}, "cannot carry the identity"),
        ({"url": URL, "client_headers": ["Content-Length"]}, "set by the gateway"),
        ({"url": URL, "timeout": 0}, "timeout"),
        ({"url": URL, "timeout": 61}, "timeout"),
        ({"url": URL, "cache_ttl": -1}, "cache_ttl"),
        ({"url": URL, "cache_ttl": 301}, "cache_ttl"),
        ({"url": URL, "cache_max_entries": 0}, "cache_max_entries"),
        ({"url": URL, "upstream_headers": [f"X-H{i}" for i in range(33)]}, "upstream_headers"),
        ({"url": URL, "cache": 10}, "cache"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ForwardAuthConfig.model_validate(data)


def test_the_identity_header_and_the_upstream_headers_are_owned() -> None:
    config = ForwardAuthConfig.model_validate(
        {"url": URL, "upstream_headers": ["X-User", "X-Groups"], "identity_header": "X-Consumer"}
    )
    assert SPEC.headers_owned_by(config) == {"x-auth-user", "x-consumer", "x-user", "x-groups"}


def _context() -> RequestContext:
    headers = Headers([(b"x-user", b"forged"), (b"accept", b"*/*")])
    return RequestContext(
        scope={},
        method="GET",
        host="example.test",
        path="/",
        scheme="http",
        client_ip="10.0.0.1",
        peer_ip="10.0.0.1",
        route=None,
        request=UpstreamRequest("GET", b"/", headers),
    )


def test_a_grant_replaces_owned_headers_and_sets_the_identity() -> None:
    answer = [(b"x-user", b"alice"), (b"x-groups", b"a"), (b"x-groups", b"b"), (b"x-internal", b"1")]
    grant = grant_from(answer, copied={b"x-user", b"x-groups"}, identity_from=b"x-user")
    ctx = _context()
    assert grant.apply(ctx, {b"x-user", b"x-groups"}, "X-Auth-User")
    assert ctx.identity == "alice"
    assert ctx.request.headers.raw == [
        (b"accept", b"*/*"),
        (b"x-user", b"alice"),
        (b"x-groups", b"a"),
        (b"x-groups", b"b"),
        (b"x-auth-user", b"alice"),
    ]


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ([(b"x-user", b"alice"), (b"x-groups", b"a\r\nX-Evil: 1")], "x-groups header has CR, LF or NUL"),
        ([(b"x-user", b"ali\nce")], "CR, LF or NUL"),
        ([(b"x-user", b"ali\x00ce")], "CR, LF or NUL"),
        ([], "0 x-user headers"),
        ([(b"x-user", b"a"), (b"x-user", b"b")], "2 x-user headers"),
        ([(b"x-user", b"  ")], "empty"),
    ],
)
def test_an_unusable_grant_is_refused_whole(answer: list[tuple[bytes, bytes]], fragment: str) -> None:
    with pytest.raises(AuthAnswerError, match=fragment):
        grant_from(answer, copied={b"x-user", b"x-groups"}, identity_from=b"x-user")


def test_an_identity_the_header_api_refuses_is_caught_even_without_copying_it() -> None:
    with pytest.raises(AuthAnswerError, match="CR, LF or NUL"):
        grant_from([(b"x-sub", b"bob\rx")], copied=set(), identity_from=b"x-sub")


def test_the_cache_expires_entries_and_drops_the_least_recently_used() -> None:
    now = [100.0]
    cache: TtlCache[str] = TtlCache(ttl=10, max_entries=2, clock=lambda: now[0])
    cache.put(b"a", "A")
    cache.put(b"b", "B")
    assert cache.get(b"a") == "A"  # now "b" is the least recently used
    cache.put(b"c", "C")
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == ("A", None, "C")
    assert len(cache) == 2
    now[0] = 110.0
    assert cache.get(b"a") is None
    assert len(cache) == 1
