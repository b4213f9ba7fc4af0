"""The client's request head, checked and turned into the head the upstream will see.

One pass over the client's headers does all of it: refuse ambiguous framing (both
Content-Length and Transfer-Encoding, conflicting Content-Lengths, a transfer coding other
than chunked), drop hop-by-hop headers (RFC 9110 §7.6.1: Connection and every header it
names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade) and framing
(the transport frames the upstream request itself), and set X-Forwarded-For/-Proto/-Host/
-Port and X-Real-IP from what the gateway saw. Client-sent forwarding headers count only
when the peer is a trusted proxy; otherwise they are replaced, never passed on.

Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from gateway_core.errors import RequestError
from gateway_core.messages import RawHeaders
from gateway_core.routing.matching import normalize_path

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)

_HOST, _LENGTH, _CODING, _CONNECTION, _DROP, _XFF, _XFP, _XFH, _XFPORT, _FORWARDED = range(10)
_SPECIAL = {
    b"host": _HOST,
    b"content-length": _LENGTH,
    b"transfer-encoding": _CODING,
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _DROP,
    b"expect": _DROP,  # the server answers 100-continue itself when the body is read
    b"x-real-ip": _DROP,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"x-forwarded-port": _XFPORT,
    b"forwarded": _FORWARDED,
}


HeaderRules = dict[bytes, int]
"""How :func:`read_request_head` treats each special request header (see :func:`header_rules`)."""


def header_rules(stripped: Iterable[bytes] = ()) -> HeaderRules:
    """The header rules with ``stripped`` names dropped too (plugin-owned headers).

    Names the gateway itself handles (Host, framing, forwarding) keep their own rule.
    """
    rules = {name: _DROP for name in stripped}
    rules.update(_SPECIAL)
    return rules


class TrustedProxies:
    """The peers whose forwarding headers are believed (CIDR list from settings)."""

    __slots__ = ("_networks", "_cache")

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` lies in a trusted network (cached; bounded)."""
        known = self._cache.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address.strip())
            except ValueError:
                known = False
            else:
                known = any(ip in network for network in self._networks)
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[address] = known
        return known

    def client_from(self, forwarded_for: str, peer: str) -> str:
        """The client address: the right-most X-Forwarded-For entry that is not a trusted proxy.

        Entries some proxies write with a port (``203.0.113.7:4711``, ``[2001:db8::7]:443``)
        count as their address.
        """
        for item in reversed(forwarded_for.split(",")):
            hop = _without_port(item.strip())
            if not hop:
                continue
            if not self.trusts(hop):
                return hop
            peer = hop
        return peer


def _without_port(hop: str) -> str:
    """``1.2.3.4:80`` -> ``1.2.3.4``; ``[::1]:80`` and ``[::1]`` -> ``::1``; anything else unchanged."""
    if hop.startswith("["):
        end = hop.find("]")
        rest = hop[end + 1 :] if end > 0 else ""
        if end > 0 and (not rest or (rest[0] == ":" and rest[1:].isdigit())):
            return hop[1:end]
        return hop
    host, colon, port = hop.partition(":")
    if colon and port.isdigit():  # one colon only: IPv6 addresses have several
        return host
    return hop


class RequestHead:
    """The parts of a client request the gateway routes and forwards by."""

    __slots__ = ("host", "path", "target", "headers", "content_length", "chunked", "client_ip", "peer_ip", "proto")

    def __init__(
        self,
        host: str,
        path: str,
        target: bytes,
        headers: RawHeaders,
        content_length: int | None,
        chunked: bool,
        client_ip: str,
        peer_ip: str,
        proto: bytes = b"http",
    ) -> None:
        self.host = host
        """Lowercase, without port; ``""`` when the request had no Host."""
        self.path = path
        """The decoded path, dot-segments resolved: what routing matches."""
        self.target = target
        """Path and query for the upstream request line (raw unless dot-segments were resolved)."""
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.client_ip = client_ip
        self.peer_ip = peer_ip
        self.proto = proto
        """The X-Forwarded-Proto sent upstream: the listener's scheme, or a trusted proxy's word."""

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@functools.lru_cache(maxsize=4096)
def host_without_port(value: bytes) -> str:
    """``Example.COM:8080`` -> ``example.com``; ``[::1]:80`` -> ``::1``; trailing dot dropped."""
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise RequestError("invalid Host header")
        return host[1:end]
    colon = host.rfind(":")
    if colon >= 0:
        port = host[colon + 1 :]
        if port and not port.isdigit():
            raise RequestError("invalid Host header")
        host = host[:colon]
    return host.rstrip(".")


def read_request_head(scope: dict[str, Any], trusted: TrustedProxies, rules: HeaderRules = _SPECIAL) -> RequestHead:
    """Check the request head and build the upstream head; :class:`RequestError` if malformed.

    ``rules`` (from :func:`header_rules`) adds headers to drop, such as plugin-owned ones.
    """
    out: RawHeaders = []
    host_value: bytes | None = None
    length: bytes | None = None
    coding: bytes | None = None
    connection: bytes | None = None
    client_xff = client_proto = client_host = client_port = client_forwarded = None
    special = rules
    for name, value in scope["headers"]:
        kind = special.get(name)
        if kind is None:
            out.append((name, value))
        elif kind == _HOST:
            if host_value is not None:
                raise RequestError("more than one Host header")
            host_value = value
            out.append((name, value))
        elif kind == _LENGTH:
            if length is not None and length != value:
                raise RequestError("conflicting Content-Length headers")
            length = value
        elif kind == _CODING:
            coding = value if coding is None else coding + b", " + value
        elif kind == _CONNECTION:
            connection = value if connection is None else connection + b", " + value
        elif kind == _XFF:
            client_xff = value if client_xff is None else client_xff + b", " + value
        elif kind == _XFP:
            client_proto = value
        elif kind == _XFH:
            client_host = value
        elif kind == _XFPORT:
            client_port = value
        elif kind == _FORWARDED:
            client_forwarded = value
        # _DROP: hop-by-hop or ours to set

    content_length: int | None = None
    chunked = False
    if coding is not None:
        if length is not None:
            raise RequestError("both Content-Length and Transfer-Encoding are present")
        if scope.get("http_version") == "1.0":
            raise RequestError("Transfer-Encoding is not allowed in HTTP/1.0")
        if coding.strip().lower() != b"chunked":
            raise RequestError("only the chunked transfer coding is supported")
        chunked = True
    elif length is not None:
        if not length.strip().isdigit():
            raise RequestError("invalid Content-Length")
        content_length = int(length)
    if host_value is None and scope.get("http_version") not in ("1.0", "0.9"):
        raise RequestError("missing Host header")
    if connection is not None:
        named = {token.strip().lower() for token in connection.split(b",")} - {b"close", b"keep-alive"}
        if named:
            out = [item for item in out if item[0] not in named or item[0] == b"host"]

    path: str = scope["path"]
    if not path.startswith("/"):
        raise RequestError("the request target must be an absolute path")
    query: bytes = scope.get("query_string", b"")
    normalized = normalize_path(path)
    if normalized is None:
        raw_path: bytes = scope.get("raw_path") or path.encode()
    else:
        path = normalized
        raw_path = quote(normalized, safe="/:@!$&'()*+,;=-._~").encode("ascii")
    target = raw_path + b"?" + query if query else raw_path

    client = scope.get("client")
    peer = client[0] if client else ""
    host_header = host_value.decode("latin-1") if host_value is not None else ""
    server = scope.get("server")
    port = str(server[1]).encode() if server and server[1] is not None else b""
    proto = scope.get("scheme", "http").encode()
    if trusted and peer and trusted.trusts(peer):
        chain = client_xff.decode("latin-1") if client_xff else ""
        client_ip = trusted.client_from(chain, peer)
        forwarded_for = (client_xff + b", " + peer.encode()) if client_xff else peer.encode()
        proto = client_proto or proto
        forwarded_host = client_host or host_value or b""
        port = client_port or port
        if client_forwarded is not None:
            out.append((b"forwarded", client_forwarded))
    else:
        client_ip = peer
        forwarded_for = peer.encode()
        forwarded_host = host_value or b""
    out += (
        (b"x-forwarded-for", forwarded_for),
        (b"x-forwarded-proto", proto),
        (b"x-forwarded-host", forwarded_host),
        (b"x-forwarded-port", port),
        (b"x-real-ip", client_ip.encode()),
    )
    host = host_without_port(host_value) if host_header else ""
    return RequestHead(host, path, target, out, content_length, chunked, client_ip, peer, proto)
