"""Address sets: CIDR lists compiled into sorted integer ranges, searched by bisection.

A list is parsed once, when the plugin is bound. Its networks become integer ranges, sorted,
with overlapping and adjacent ones merged (what ``ipaddress.collapse_addresses`` does, minus
a network object per step, which made it the slowest part of binding a long list), so the
ranges are disjoint and one ``bisect`` answers whether an address is in the set: a lookup
costs the log of the list's length, not the length. This module does no I/O and keeps no
per-request state.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAPPED_PREFIX = 96
"""``::ffff:0:0/96``: IPv6 addresses that are IPv4 addresses in disguise (RFC 4291 §2.5.5.2)."""

MAX_ADDRESS_LENGTH = 64
"""Longer text is no IP address (the longest, an IPv6 with a scope id, is shorter)."""


def parse_network(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``2001:db8::/32`` or a single address (as /32 or /128).

    An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) becomes its IPv4 network, as
    mapped client addresses are matched as IPv4. ``ValueError`` with a readable reason.
    """
    value = text.strip()
    if not value:
        raise ValueError("an empty entry is not a network")
    if "%" in value:
        raise ValueError(f"{value!r}: a zone index (after '%') cannot be filtered on; leave it out")
    try:
        network: IPNetwork = ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            loose = ipaddress.ip_network(value, strict=False)
            raise ValueError(f"{value!r} has host bits set: write {loose} (or the single address alone)") from None
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address or CIDR") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= _MAPPED_PREFIX:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - _MAPPED_PREFIX))
    return network


def parse_address(text: str) -> IPAddress | None:
    """The client address ``text`` names, IPv4-mapped IPv6 unwrapped to IPv4; None if unparsable."""
    if len(text) > MAX_ADDRESS_LENGTH:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _Ranges:
    """One address family's networks as disjoint, sorted ``[start, end]`` integer ranges."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        bounds = sorted((int(network.network_address), int(network.broadcast_address)) for network in networks)
        for start, end in bounds:
            if self._ends and start <= self._ends[-1] + 1:  # overlaps or touches the previous range
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    def __len__(self) -> int:
        return len(self._starts)

    def __contains__(self, value: int) -> bool:
        index = bisect_right(self._starts, value) - 1
        return index >= 0 and value <= self._ends[index]


class AddressSet:
    """A set of IPv4 and IPv6 networks; ``address in networks`` in logarithmic time."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        v4: list[IPNetwork] = []
        v6: list[IPNetwork] = []
        for network in networks:
            (v4 if network.version == 4 else v6).append(network)
        self._v4 = _Ranges(v4)
        self._v6 = _Ranges(v6)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AddressSet:
        """An address set from CIDR text (see :func:`parse_network`)."""
        return cls(parse_network(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(len(self._v4) or len(self._v6))

    @property
    def range_count(self) -> int:
        """How many disjoint ranges the networks merged into (adjacent networks make one)."""
        return len(self._v4) + len(self._v6)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, ipaddress.IPv4Address):
            return int(address) in self._v4
        if isinstance(address, ipaddress.IPv6Address):
            return int(address) in self._v6
        return False
