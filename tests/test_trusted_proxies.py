"""The client address behind trusted proxies: X-Forwarded-For read right to left."""

from __future__ import annotations

import pytest

from gateway_core.request_head import TrustedProxies

TRUSTED = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7, 10.0.0.2", "203.0.113.7"),  # right-most untrusted hop
        ("203.0.113.7:4711", "203.0.113.7"),  # a port some proxies append
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),  # bare IPv6 is not a port
        ("203.0.113.7, 10.0.0.3:8080", "203.0.113.7"),  # a trusted hop with a port is still trusted
        ("10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the left-most
        (" , ,", "10.0.0.1"),  # nothing usable: the peer
        ("garbage", "garbage"),  # not an address: untrusted, returned as sent
        ("203.0.113.7:port", "203.0.113.7:port"),  # not a port: left alone
        ("[2001:db8::7]x", "[2001:db8::7]x"),
    ],
)
def test_client_address_from_the_forwarded_chain(chain: str, expected: str) -> None:
    assert TRUSTED.client_from(chain, "10.0.0.1") == expected
