"""How an annotation names one endpoint: ``ip``, ``ip:port``, ``[ipv6]:port`` or a bare IPv6 address.

Used by the ``weights`` of ``meta-native.io/load-balance``. Keys are checked and spelled the
way :attr:`gateway_core.messages.Endpoint.address` (with a port) and ``Endpoint.host``
(without) spell them, so a lookup is a plain dict access. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


def endpoint_key(key: str) -> str:
    """``key`` spelled as an endpoint's address or host; ValueError when it names no endpoint."""
    host, port = key, ""
    if key.startswith("["):
        host, closed, rest = key[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{key!r} is not [ipv6]:port")
        port = rest[1:]
        _ipv6(host, key)
        if rest and not port:
            raise ValueError(f"{key!r} has an empty port")
    elif key.count(":") == 1:
        host, _, port = key.partition(":")
        if not port:
            raise ValueError(f"{key!r} has an empty port")
    elif ":" in key:
        _ipv6(key, key)
    if ":" not in host:
        _host(host, key)
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{key!r}: the port must be a number between 1 and 65535")
        return f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"
    return host


def _ipv6(host: str, key: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"{key!r}: {host!r} is not an IPv6 address") from None


def _host(host: str, key: str) -> None:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not _DNS_NAME.match(host) or host.replace(".", "").isdigit():
            raise ValueError(f"{key!r} is not an IP address, ip:port or a DNS name") from None
