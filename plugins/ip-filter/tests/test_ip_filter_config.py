"""ip-filter's config model: what an annotation may say, and what it is refused for."""

from __future__ import annotations

import pytest
from gateway_plugin_ip_filter import SPEC, IpFilterConfig
from pydantic import ValidationError


def test_entries_are_normalised_single_addresses_and_mapped_networks_included() -> None:
    config = IpFilterConfig.model_validate(
        {"allow": [" 10.0.0.1 ", "2001:db8::1", "::ffff:192.168.0.0/112"], "deny": ["10.0.0.0/8", "fe80::/10"]}
    )
    assert config.allow == ["10.0.0.1/32", "2001:db8::1/128", "192.168.0.0/16"]
    assert config.deny == ["10.0.0.0/8", "fe80::/10"]


def test_either_list_alone_is_enough() -> None:
    assert IpFilterConfig.model_validate({"allow": ["10.0.0.0/8"]}).deny == []
    assert IpFilterConfig.model_validate({"deny": ["10.0.0.0/8"]}).allow == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "set `allow`, `deny` or both"),
        ({"allow": [], "deny": []}, "set `allow`, `deny` or both"),
        ({"allow": ["10.0.0.0/33"]}, r"allow\[0\]: '10.0.0.0/33' is not an IPv4 or IPv6"),
        ({"deny": ["10.0.0.0/8", "banana"]}, r"deny\[1\]: 'banana' is not"),
        ({"deny": ["10.1.2.3/8"]}, r"deny\[0\]: '10.1.2.3/8' has host bits set: write 10.0.0.0/8"),
        ({"allow": ["2001:db8::1/32"]}, "write 2001:db8::/32"),
        ({"allow": [""]}, "empty entry"),
        ({"allow": ["010.0.0.1"]}, "is not an IPv4"),
        ({"allow": ["fe80::1%eth0"]}, "zone index"),
        ({"allow": ["10.0.0.0/8\r\nx"]}, "is not an IPv4"),
        ({"allow": [167772160]}, "allow.0"),
        ({"allow": "10.0.0.0/8"}, "allow"),
        ({"allow": ["10.0.0.0/8"], "alow": ["1.2.3.4"]}, "alow"),
    ],
)
def test_bad_configs_are_refused_with_the_entry_named(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        IpFilterConfig.model_validate(data)


def test_a_list_too_long_is_refused() -> None:
    with pytest.raises(ValidationError, match="at most 65536"):
        IpFilterConfig.model_validate({"deny": ["10.0.0.1"] * 65537})


def test_the_spec_runs_before_the_authentication_plugins_and_owns_no_headers() -> None:
    assert SPEC.priority == 2600
    assert SPEC.headers_owned_by(IpFilterConfig.model_validate({"deny": ["10.0.0.0/8"]})) == frozenset()
