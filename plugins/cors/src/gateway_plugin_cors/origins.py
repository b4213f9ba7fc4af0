"""Origins: parsing the configured patterns and matching a request's ``Origin`` against them.

An origin is ``scheme://host[:port]`` (RFC 6454). Scheme and host compare case-insensitively,
the port exactly (a scheme's default port is the same as no port). A pattern is an exact
origin or ``scheme://*.suffix[:port]``, which matches exactly one more DNS label in front of
``suffix``. The ``null`` origin (sandboxed frames, ``file:`` pages, redirects) matches
nothing. This module does no I/O and keeps no state per request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ORIGIN = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31})://"
    r"(?P<host>\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9_.-]{1,253})"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
MAX_ORIGIN_LENGTH = 300
"""Longer ``Origin`` values are not origins any browser sends; they never match."""


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed origin: lowercase scheme and host, and the port (the default one filled in)."""

    scheme: str
    host: str
    port: int

    @property
    def key(self) -> str:
        """The canonical ``scheme://host:port`` text, for exact lookups."""
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(text: str) -> Origin | None:
    """``text`` as an origin, or None when it is not one (``null`` included)."""
    if len(text) > MAX_ORIGIN_LENGTH:
        return None
    found = _ORIGIN.match(text)
    if found is None:
        return None
    scheme = found["scheme"].lower()
    host = found["host"].lower()
    if host.startswith(".") or host.endswith(".") or ".." in host:
        return None
    if found["port"] is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
        if port == 0:
            return None  # an unknown scheme needs an explicit port to be compared exactly
    else:
        port = int(found["port"])
        if not 0 < port < 65536:
            return None
    return Origin(scheme, host, port)


@dataclass(frozen=True, slots=True)
class Wildcard:
    """``scheme://*.suffix[:port]``: any single DNS label in front of ``suffix``."""

    scheme: str
    suffix: str
    """``.example.com``, with its leading dot."""
    port: int

    def matches(self, origin: Origin) -> bool:
        """Whether ``origin`` is exactly one label under this pattern's suffix."""
        if origin.scheme != self.scheme or origin.port != self.port:
            return False
        host = origin.host
        if not host.endswith(self.suffix):
            return False
        label = host[: -len(self.suffix)]
        return _LABEL.match(label) is not None


def parse_pattern(text: str) -> Origin | Wildcard:
    """A configured origin pattern; ValueError with the reason if it is not a usable one."""
    if text == "null":
        raise ValueError("the `null` origin cannot be allowed: sandboxed frames, file: pages and redirects all send it")
    if "*" not in text:
        origin = parse_origin(text)
        if origin is None:
            raise ValueError(
                f"{text!r} is not an origin: write scheme://host[:port] (no path, no trailing slash; "
                "a scheme other than http/https needs its port)"
            )
        return origin
    scheme, marker, rest = text.partition("://*.")
    stand_in = parse_origin(f"{scheme}://wildcard.{rest}") if marker and "*" not in rest else None
    if stand_in is None:
        raise ValueError(f"{text!r} is not an origin pattern: write scheme://*.domain[:port], `*` only first")
    suffix = stand_in.host[len("wildcard") :]
    if suffix.count(".") < 2:
        raise ValueError(f"{text!r} is too wide: the part after `*.` must have at least two labels (example.com)")
    return Wildcard(stand_in.scheme, suffix, stand_in.port)


class OriginMatcher:
    """The allowed origins of one route, compiled once at bind time."""

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, patterns: list[str]) -> None:
        exact: set[str] = set()
        wildcards: list[Wildcard] = []
        for text in patterns:
            pattern = parse_pattern(text)
            if isinstance(pattern, Wildcard):
                wildcards.append(pattern)
            else:
                exact.add(pattern.key)
        self._exact = frozenset(exact)
        self._wildcards = tuple(wildcards)

    def allows(self, text: str) -> bool:
        """Whether the ``Origin`` header value ``text`` is allowed."""
        origin = parse_origin(text)
        if origin is None:
            return False
        if origin.key in self._exact:
            return True
        return any(wildcard.matches(origin) for wildcard in self._wildcards)
