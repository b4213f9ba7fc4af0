"""Address sets and the verdict: compiled ranges agree with plain ``ipaddress`` membership."""

from __future__ import annotations

import ipaddress
import random

import pytest
from gateway_plugin_ip_filter import AddressSet, IpFilter, IpFilterConfig
from gateway_plugin_ip_filter.networks import parse_address, parse_network
from gateway_plugin_ip_filter.plugin import VERDICT_CACHE_SIZE


def _random_networks(rng: random.Random, count: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(count):
        if rng.random() < 0.7:
            v4 = ipaddress.IPv4Address(rng.getrandbits(8) << 24 | rng.getrandbits(24))
            networks.append(ipaddress.IPv4Network((v4, rng.choice([8, 12, 16, 24, 30, 32])), strict=False))
        else:
            v6 = ipaddress.IPv6Address(0x20010DB8 << 96 | rng.getrandbits(96))
            networks.append(ipaddress.IPv6Network((v6, rng.choice([33, 48, 64, 127, 128])), strict=False))
    return networks


def test_membership_matches_a_linear_scan_on_random_lists() -> None:
    rng = random.Random(5)
    networks = _random_networks(rng, 400)
    compiled = AddressSet(networks)
    assert compiled.range_count <= len(networks)
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for network in networks:  # the edges of every network, and just outside them
        for value in (int(network.network_address), int(network.broadcast_address)):
            for delta in (-1, 0, 1):
                limit = 2**network.max_prefixlen
                probes.append(
                    ipaddress.ip_address((value + delta) % limit)
                    if network.version == 4
                    else ipaddress.IPv6Address((value + delta) % limit)
                )
    probes += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    for probe in probes:
        expected = any(probe.version == network.version and probe in network for network in networks)
        assert (probe in compiled) is expected, probe


def test_overlapping_and_adjacent_networks_merge_as_collapse_addresses_would() -> None:
    compiled = AddressSet.parse(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7", "10.0.0.0/24", "192.0.2.0/24"])
    assert compiled.range_count == 2
    assert parse_address("10.0.0.255") in compiled
    assert parse_address("10.0.1.0") not in compiled
    assert parse_address("192.0.1.255") not in compiled


def test_families_stay_apart() -> None:
    compiled = AddressSet.parse(["0.0.0.0/0"])
    assert parse_address("1.2.3.4") in compiled
    assert parse_address("::1") not in compiled
    assert "1.2.3.4" not in compiled  # only parsed addresses are members
    assert not AddressSet.parse([])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::FFFF:a01:203", "10.1.2.3"),
        ("2001:DB8::1", "2001:db8::1"),
        ("::10.1.2.3", "::a01:203"),  # IPv4-compatible (deprecated) is not IPv4-mapped
        ("", None),
        ("unknown", None),
        ("10.1.2.3:443", None),
        ("[::1]", None),
        (" 10.1.2.3", None),
        ("1" * 100, None),
        ("10.1.2.3\x00", None),
    ],
)
def test_client_addresses_parse_strictly_and_mapped_ones_become_ipv4(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


def test_a_mapped_network_in_the_config_becomes_ipv4() -> None:
    assert str(parse_network("::ffff:10.0.0.0/104")) == "10.0.0.0/8"
    assert str(parse_network("::ffff:0:0/96")) == "0.0.0.0/0"
    assert str(parse_network("::/0")) == "::/0"


def test_verdicts_deny_wins_and_unparsable_addresses_match_nothing() -> None:
    both = IpFilter(IpFilterConfig(allow=["10.0.0.0/8"], deny=["10.6.0.0/16"]))
    assert both.allows("10.1.1.1")
    assert not both.allows("10.6.1.1")
    assert not both.allows("11.0.0.1")
    assert not both.allows("garbage")
    deny_only = IpFilter(IpFilterConfig(deny=["10.6.0.0/16"]))
    assert deny_only.allows("garbage")
    assert deny_only.allows("")
    assert not deny_only.allows("::ffff:10.6.0.9")
    all_ipv6 = IpFilter(IpFilterConfig(allow=["::/0"]))
    assert all_ipv6.allows("2001:db8::1")
    assert not all_ipv6.allows("::ffff:10.6.0.9")  # a mapped client is an IPv4 client


def test_the_verdict_cache_is_bounded_and_forgets_the_oldest_first() -> None:
    ip_filter = IpFilter(IpFilterConfig(allow=["10.0.0.0/8"]))
    for index in range(VERDICT_CACHE_SIZE + 100):
        assert ip_filter.allows(str(ipaddress.IPv4Address(0x0A000000 + index)))
    assert len(ip_filter._verdicts) == VERDICT_CACHE_SIZE
    assert "10.0.0.0" not in ip_filter._verdicts
    assert f"{ipaddress.IPv4Address(0x0A000000 + VERDICT_CACHE_SIZE + 99)}" in ip_filter._verdicts
