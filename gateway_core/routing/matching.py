"""Host and path matching with the Kubernetes Ingress rules, at a cost independent of size.

A request's host picks one bucket: the exact host, else the ``*.`` wildcard one label up,
else the host-less rules. Inside the bucket, an ``Exact`` path is one dict lookup and a
``Prefix`` path is one dict lookup per path segment, longest first; so matching costs
O(segments in the request path), whatever the number of routes. A path that matches
nothing in its bucket goes to the bucket's fallback (an Ingress ``defaultBackend`` for
that host), then to the global default, then nowhere (404) — it does not fall through to
other hosts' rules, as in nginx server blocks and Envoy virtual hosts.
"""

from __future__ import annotations

import posixpath
import re
from typing import Generic, TypeVar

R = TypeVar("R")

_SLASHES = re.compile(r"//+")


def exact_key(path: str) -> str:
    """The lookup key of an ``Exact`` path: runs of ``/`` merged into one.

    Empty segments are ignored by ``Exact`` as by ``Prefix`` (:func:`prefix_key`), so
    ``//admin`` cannot dodge an ``Exact /admin`` route (and its plugins) for a broader
    ``Prefix`` one. A trailing slash still counts: ``/foo/`` is not ``/foo``.
    """
    return _SLASHES.sub("/", path) if "//" in path else path


def prefix_key(path: str) -> str:
    """The lookup key of a ``Prefix`` path: empty segments and trailing slashes dropped.

    ``/foo/`` and ``/foo`` share the key ``/foo``; ``/`` is the empty key.
    """
    if "//" in path:
        path = "/" + "/".join(segment for segment in path.split("/") if segment)
    return path.rstrip("/")


def normalize_path(path: str) -> str | None:
    """Resolve ``.`` and ``..`` segments (RFC 3986 §5.2.4) so matching sees the real path.

    Returns None when the path is already normal (the common case, checked cheaply), or
    the resolved path. A ``..`` above the root stays at the root.
    """
    if "/." not in path:
        return None
    segments = path.split("/")
    if not any(segment in (".", "..") for segment in segments):
        return None
    resolved = posixpath.normpath(path)
    if resolved.startswith("//"):
        resolved = "/" + resolved.lstrip("/")
    if path.endswith(("/", "/.", "/..")) and resolved != "/":
        resolved += "/"
    return resolved


class PathIndex(Generic[R]):
    """The paths of one host bucket."""

    __slots__ = ("exact", "prefix", "fallback")

    def __init__(self) -> None:
        self.exact: dict[str, R] = {}
        self.prefix: dict[str, R] = {}
        self.fallback: R | None = None

    def match(self, path: str) -> R | None:
        if "//" in path:
            path = _SLASHES.sub("/", path)
        route = self.exact.get(path)
        if route is not None:
            return route
        prefix = self.prefix
        if not prefix:
            return None
        key = prefix_key(path)
        while True:
            route = prefix.get(key)
            if route is not None:
                return route
            if not key:
                return None
            key = key[: key.rfind("/")]


class HostIndex(Generic[R]):
    """Every route of a table, by host bucket, then path."""

    __slots__ = ("exact", "wildcard", "any_host", "default")

    def __init__(self) -> None:
        self.exact: dict[str, PathIndex[R]] = {}
        self.wildcard: dict[str, PathIndex[R]] = {}
        self.any_host: PathIndex[R] | None = None
        self.default: R | None = None

    def bucket(self, host: str) -> PathIndex[R]:
        """The bucket for a rule's host (``""`` = any host, ``*.suffix`` = wildcard); created if new."""
        if not host:
            if self.any_host is None:
                self.any_host = PathIndex()
            return self.any_host
        if host.startswith("*."):
            return self.wildcard.setdefault(host[2:], PathIndex())
        return self.exact.setdefault(host, PathIndex())

    def match(self, host: str, path: str) -> R | None:
        """The route for a lowercase, port-less request host and a normalized path."""
        index = self.exact.get(host)
        if index is None:
            dot = host.find(".")
            if dot > 0:
                index = self.wildcard.get(host[dot + 1 :])
            if index is None:
                index = self.any_host
                if index is None:
                    return self.default
        route = index.match(path)
        if route is None:
            route = index.fallback
            if route is None:
                return self.default
        return route
