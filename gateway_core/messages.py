"""The request plane's vocabulary: headers, endpoints, requests, responses, the context.

These are the types every phase of a request sees, from the proxy to a plugin's
``on_log``. They hold data and offer small conveniences; they do no I/O and import nothing
from the rest of the gateway, so any layer may use them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

RawHeaders = list[tuple[bytes, bytes]]
"""ASGI-style header list: lowercase names, values as sent, both latin-1 bytes."""

T = TypeVar("T")


class Headers:
    """A mutable, ordered, case-insensitive view over a raw ASGI header list.

    Edits change the wrapped list in place, so the proxy forwards exactly what plugins left.
    Names are stored lowercase; values are latin-1 text at this API.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: RawHeaders | None = None) -> None:
        self.raw: RawHeaders = raw if raw is not None else []

    @staticmethod
    def _key(name: str) -> bytes:
        return name.lower().encode("latin-1")

    @staticmethod
    def _value(value: str) -> bytes:
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("a header value must not contain CR, LF or NUL")
        return value.encode("latin-1")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = self._key(name)
        for item_name, value in self.raw:
            if item_name == key:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = self._key(name)
        return [value.decode("latin-1") for item_name, value in self.raw if item_name == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return any(item_name == key for item_name, _ in self.raw)

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one value.

        Raises ValueError for a value with CR, LF or NUL, or one latin-1 cannot encode: a
        value taken from a token or an auth service can never split the upstream request.
        """
        encoded = self._value(value)
        self.remove(name)
        self.raw.append((self._key(name), encoded))

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping existing ones (same checks as :meth:`set`)."""
        self.raw.append((self._key(name), self._value(value)))

    def remove(self, name: str) -> None:
        """Drop every value of ``name`` (no error when absent)."""
        key = self._key(name)
        self.raw[:] = [item for item in self.raw if item[0] != key]

    def items(self) -> Iterator[tuple[str, str]]:
        """``(name, value)`` pairs as text, in order."""
        for name, value in self.raw:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    """How an endpoint is reached over TLS (the ``meta-native.io/backend-tls`` annotation)."""

    server_name: str
    """Sent as SNI; the upstream's certificate must carry it when ``verify`` is on."""
    verify: bool = True
    """Check the upstream's certificate (and its name); off only when the Ingress says so."""
    ca_pem: bytes | None = field(default=None, repr=False)
    """PEM CA certificates to trust; None = the system's trust store."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address: an IP (or DNS name, for ExternalName Services) and a port."""

    host: str
    port: int
    tls: UpstreamTLS | None = None
    """How to reach it over HTTPS, or None for plain HTTP. Part of the identity: a TLS and a
    plain endpoint at one address have separate pooled connections and state."""

    @property
    def address(self) -> str:
        """``host:port``, with IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds."""

    connect: float = 5.0
    """Time allowed to open a TCP connection."""
    read: float = 60.0
    """Time allowed before the first response byte, and between any two later reads."""
    write: float = 60.0
    """Time a write to the upstream may stay blocked (the upstream not reading)."""


class Balancer(Protocol):
    """Chooses an endpoint for each request (a strategy; ``transport.balancing`` has them)."""

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for this try, or None when there is none.

        ``avoid`` holds the endpoints this request already tried: a retry goes elsewhere when
        another endpoint is available, else to one of them.
        """
        ...


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """What a plugin may know about the route it is bound to."""

    id: str
    namespace: str
    ingress: str
    host: str
    path: str
    path_type: str
    service: str

    @property
    def ingress_ref(self) -> str:
        """``namespace/name`` of the Ingress the route comes from."""
        return f"{self.namespace}/{self.ingress}"


class RequestBody(Protocol):
    """The client's request body as the transport consumes it: once, chunk by chunk."""

    content_length: int | None
    """The declared length, or None when the body is chunked."""
    consumed: bool
    """True once :meth:`chunks` was iterated: the body cannot be sent again."""

    def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body's chunks as they arrive from the client."""
        ...


@dataclass(slots=True)
class UpstreamRequest:
    """The request as it will be sent upstream; ``on_upstream_request`` may edit it."""

    method: str
    target: bytes
    """Path and query exactly as they go on the request line (raw, still percent-encoded)."""
    headers: Headers
    body: RequestBody | None = None


class ResponseBody(Protocol):
    """A response body that arrives over time (streamed from an upstream) or at once."""

    def take(self) -> tuple[bytes, bool]:
        """Return what is buffered now (maybe ``b""``) and whether that ends the body."""
        ...

    async def read(self) -> bytes:
        """Wait for the next chunk; ``b""`` means the body is complete."""
        ...

    def close(self) -> None:
        """Give up on the rest of the body and release what holds it."""
        ...


class BytesBody:
    """A response body that is already whole."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes = b"") -> None:
        self._data = data

    def take(self) -> tuple[bytes, bool]:
        data, self._data = self._data, b""
        return data, True

    async def read(self) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        self._data = b""


@dataclass(slots=True)
class UpstreamResponse:
    """The upstream's answer: status and headers now, the body as it streams."""

    status: int
    headers: Headers
    body: ResponseBody = field(default_factory=BytesBody)
    endpoint: Endpoint | None = None


@dataclass(slots=True)
class LocalResponse:
    """A response made by the gateway itself, e.g. a plugin short-circuiting ``on_request``."""

    status: int
    body: bytes = b""
    headers: RawHeaders = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> LocalResponse:
        """A JSON response; ``headers`` are extra (name, value) text pairs."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        raw = [(b"content-type", b"application/json")]
        raw.extend((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers)
        return cls(status=status, body=body, headers=raw)

    @classmethod
    def error(cls, status: int, code: str, message: str) -> LocalResponse:
        """The gateway's uniform JSON error: ``{"error": code, "message": message}``."""
        return cls.json(status, {"error": code, "message": message})


class StashKey(Generic[T]):
    """A typed key for per-request state in :class:`Stash` (one instance per purpose)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """Per-request storage shared between plugins, keyed by :class:`StashKey`."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[StashKey[Any], Any] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._items[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        value: T = self._items[key]
        return value

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        value: T | None = self._items.get(key, default)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._items


class RequestContext:
    """Everything known about one request while the gateway handles it.

    ``client_ip`` is the client as derived under the trusted-proxy rules (never a raw
    client-sent header from an untrusted peer); ``peer_ip`` is the socket's peer.
    ``request`` is the request that will go upstream, already stripped of hop-by-hop
    headers and carrying the X-Forwarded-* set.
    """

    __slots__ = (
        "_stash",
        "scope",
        "method",
        "host",
        "path",
        "scheme",
        "client_ip",
        "peer_ip",
        "route",
        "request",
        "started",
        "identity",
        "endpoint",
        "answered_by",
        "service",
    )

    def __init__(
        self,
        *,
        scope: dict[str, Any],
        method: str,
        host: str,
        path: str,
        scheme: str,
        client_ip: str,
        peer_ip: str,
        route: RouteInfo | None,
        request: UpstreamRequest,
    ) -> None:
        self.scope = scope
        self.method = method
        self.host = host
        self.path = path
        self.scheme = scheme
        self.client_ip = client_ip
        self.peer_ip = peer_ip
        self.route = route
        self.request = request
        self._stash: Stash | None = None
        self.started = time.perf_counter()
        self.identity: str | None = None
        """Who the client is, once an authentication plugin has established it."""
        self.endpoint: Endpoint | None = None
        """The upstream endpoint of the current (or last) attempt."""
        self.answered_by: str | None = None
        """The plugin whose ``on_request`` answered the client, if one did."""
        self.service = route.service if route is not None else ""
        """The Service (name, in the route's namespace) serving this request: the route's own or a canary."""

    @property
    def stash(self) -> Stash:
        """Per-request state shared between plugins (made on first use)."""
        if self._stash is None:
            self._stash = Stash()
        return self._stash


@dataclass(slots=True)
class Outcome:
    """How a request ended, handed to ``on_log`` after the last byte."""

    status: int
    bytes_received: int
    bytes_sent: int
    duration: float
    """Seconds from the start of handling to the last byte sent."""
    upstream_latency: float | None
    """Seconds from sending upstream to the upstream's response headers, if it was called."""
    endpoint: Endpoint | None
    error: str | None = None
    """The gateway error code when the gateway answered itself (e.g. ``upstream_timeout``)."""
    plugins: tuple[str, ...] = ()
    """The plugins that ran for this request, in run order (up to the one that answered)."""
