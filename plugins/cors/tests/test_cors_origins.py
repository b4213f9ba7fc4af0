"""Origin matching and the small header helpers, on their own (pure functions, no gateway)."""

from __future__ import annotations

import pytest
from gateway_plugin_cors.origins import Origin, OriginMatcher, parse_origin
from gateway_plugin_cors.plugin import MAX_REQUESTED_HEADERS, merge_vary, requested_headers

from gateway_core.messages import Headers

MATCHER = OriginMatcher(["https://app.example.com", "https://*.example.com", "http://localhost:3000"])


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "HTTPS://APP.EXAMPLE.COM",
        "https://app.example.com:443",
        "https://shop.example.com",
        "https://x-1.example.com",
        "https://SHOP.Example.com",
        "http://localhost:3000",
    ],
)
def test_allowed_origins(origin: str) -> None:
    assert MATCHER.allows(origin)


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "https://evil-example.com",
        "https://evilexample.com",
        "https://a.b.example.com",
        "https://.example.com",
        "https://-a.example.com",
        "https://example.com.evil.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "http://shop.example.com",
        "https://app.example.com:8443",
        "https://shop.example.com:444",
        "http://localhost",
        "http://localhost:3001",
        "https://app.example.com/",
        "https://user@app.example.com",
        "null",
        "",
        "*",
        "https://*.example.com",
        "https://app.example.com\r\nx: y",
        "https://" + "a" * 400 + ".example.com",
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "https://ápp.example.com",
    ],
)
def test_refused_origins(origin: str) -> None:
    assert not MATCHER.allows(origin)


def test_parse_origin_fills_the_default_port_and_lowercases() -> None:
    assert parse_origin("HTTP://Example.COM") == Origin("http", "example.com", 80)
    assert parse_origin("https://example.com:8443") == Origin("https", "example.com", 8443)
    assert parse_origin("null") is None
    assert parse_origin("ftp://example.com") is None


def test_requested_headers_are_lowercased_deduplicated_and_checked() -> None:
    assert requested_headers(["Content-Type, X-Id", "x-id,,  Authorization "]) == [
        "content-type",
        "x-id",
        "authorization",
    ]
    assert requested_headers([]) == []
    assert requested_headers(["x-ok, bad header"]) is None
    assert requested_headers(["x-ok, (bad)"]) is None
    many = requested_headers([", ".join(f"x-{i}" for i in range(200))])
    assert many is not None
    assert len(many) == MAX_REQUESTED_HEADERS + 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], ["Origin"]),
        (["Accept-Encoding"], ["Accept-Encoding, Origin"]),
        (["Accept-Encoding", "Accept-Language"], ["Accept-Encoding, Accept-Language, Origin"]),
        (["accept-encoding, origin"], ["accept-encoding, origin"]),
        (["*"], ["*"]),
    ],
)
def test_vary_gains_origin_once(before: list[str], after: list[str]) -> None:
    headers = Headers()
    for value in before:
        headers.add("Vary", value)
    merge_vary(headers, "Origin")
    assert headers.get_all("vary") == after
