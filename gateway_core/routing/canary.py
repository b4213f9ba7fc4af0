"""Canary selection: which of a route's backends serves a request.

The order, for the ``meta-native.io/canary`` list of a route:

1. Header matches, canary by canary in the annotation's order: the first canary whose
   header is present with a listed value (or present at all, when it lists none) serves.
2. Cookie matches, in the same order.
3. Weights: one random roll per request over ``[0, 100)``; each canary owns a band as wide
   as its weight, bands laid out in list order from 0; a roll past the last band goes to the
   route's own Service.

The header or cookie value ``never`` keeps a request off that canary: its later selectors
(its cookie after its header, its weight band) no longer take the request, and a roll that
lands in its band goes to the route's own Service. A canary without ready endpoints never
serves: requests it would take go to the route's own Service, so a broken canary cannot
turn a healthy route into 503s.

Everything that does not change per request is compiled once per route table into a
:class:`CanaryPlan`; the Cookie header is parsed only when some canary matches on a cookie.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway_core.manifests.upstream_policy import CanaryConfig
from gateway_core.messages import RawHeaders, RequestContext

if TYPE_CHECKING:
    from gateway_core.routing.table import Backend, Route

NEVER = "never"
"""The header or cookie value that keeps a request off a canary."""
_NEVER_BYTES = NEVER.encode()


class CanaryPlan:
    """A route's canaries compiled for the hot path (made once per route table)."""

    __slots__ = ("_backends", "_ready", "_header_names", "_header_rules", "_cookie_names", "_cookie_rules", "_bands")

    def __init__(self, canaries: Sequence[tuple[CanaryConfig, Backend]]) -> None:
        self._backends = tuple(backend for _, backend in canaries)
        self._ready = tuple(bool(backend.target.endpoints) for backend in self._backends)
        """Per canary: whether it has ready endpoints (one without never serves)."""
        header_rules: list[tuple[int, bytes, frozenset[bytes] | None]] = []
        cookie_rules: list[tuple[int, str, frozenset[str]]] = []
        bands: list[tuple[float, int]] = []
        upper = 0.0
        for index, (config, _) in enumerate(canaries):
            if config.header is not None:
                values = frozenset(value.encode("latin-1") for value in config.header.values) or None
                header_rules.append((index, config.header.name.encode("latin-1"), values))
            if config.cookie is not None:
                cookie_rules.append((index, config.cookie.name, frozenset(config.cookie.values)))
            if config.weight > 0:
                upper += config.weight
                bands.append((upper, index))
        self._header_rules = tuple(header_rules)
        self._header_names = frozenset(name for _, name, _ in header_rules)
        self._cookie_rules = tuple(cookie_rules)
        self._cookie_names = frozenset(name for _, name, _ in cookie_rules)
        self._bands = tuple(bands)

    def choose(self, primary: Backend, ctx: RequestContext) -> Backend:
        """The backend for this request: a canary, or ``primary`` (the route's own Service)."""
        excluded = 0  # bit i set: the request said "never" to canary i
        raw = ctx.request.headers.raw
        if self._header_rules:
            found = _first_values(raw, self._header_names)
            if found:
                for index, name, values in self._header_rules:
                    value = found.get(name)
                    if value is None or excluded >> index & 1:
                        continue
                    if value == _NEVER_BYTES:
                        excluded |= 1 << index
                    elif values is None or value in values:
                        return self._serve(index, primary, ctx)
        if self._cookie_rules:
            cookies = _cookies(raw, self._cookie_names)
            if cookies:
                for index, cookie_name, accepted in self._cookie_rules:
                    cookie = cookies.get(cookie_name)
                    if cookie is None or excluded >> index & 1:
                        continue
                    if cookie == NEVER:
                        excluded |= 1 << index
                    elif cookie in accepted:
                        return self._serve(index, primary, ctx)
        if self._bands:
            roll = random.random() * 100.0
            for upper, index in self._bands:
                if roll < upper:
                    return primary if excluded >> index & 1 else self._serve(index, primary, ctx)
        return primary

    def _serve(self, index: int, primary: Backend, ctx: RequestContext) -> Backend:
        if not self._ready[index]:
            return primary
        backend = self._backends[index]
        ctx.service = backend.target.service
        return backend


def choose_backend(route: Route, ctx: RequestContext) -> Backend:
    """The backend that serves this request; sets ``ctx.service`` when a canary does."""
    plan = route.canary_plan
    return route.backend if plan is None else plan.choose(route.backend, ctx)


def _first_values(raw: RawHeaders, names: frozenset[bytes]) -> dict[bytes, bytes] | None:
    """The first value of each header in ``names`` that the request has (None: none of them)."""
    found: dict[bytes, bytes] | None = None
    for name, value in raw:
        if name in names:
            if found is None:
                found = {name: value}
            elif name not in found:
                found[name] = value
    return found


def _cookies(raw: RawHeaders, names: frozenset[str]) -> dict[str, str] | None:
    """The values of the cookies in ``names`` (the first of each name), from every Cookie header.

    Only ``name=value`` pairs are read; a value in double quotes loses them (RFC 6265 §4.1.1).
    """
    found: dict[str, str] | None = None
    for header, value in raw:
        if header != b"cookie":
            continue
        for pair in value.decode("latin-1").split(";"):
            name, equals, cookie = pair.partition("=")
            name = name.strip()
            if not equals or name not in names:
                continue
            if found is None:
                found = {}
            elif name in found:
                continue
            cookie = cookie.strip()
            if len(cookie) >= 2 and cookie[0] == '"' and cookie[-1] == '"':
                cookie = cookie[1:-1]
            found[name] = cookie
    return found
