"""The ``cors`` plugin object: answers preflights itself and adds CORS headers to responses.

Everything that depends only on the config (the methods list, Max-Age, the Vary values, the
header pairs of an allowed actual request) is built once at bind time; per request the
plugin parses the ``Origin`` and, for a preflight, the two ``Access-Control-Request-*``
headers. It never reaches the upstream for a preflight and never forwards CORS decisions the
upstream made: the route's policy is this plugin's alone.
"""

from __future__ import annotations

import re

from gateway_core import Binding, LocalResponse, RequestContext
from gateway_core.messages import Headers, RawHeaders, StashKey, UpstreamResponse
from gateway_plugin_cors.config import CorsConfig
from gateway_plugin_cors.origins import OriginMatcher, parse_origin

NAME = "cors"
"""The plugin's name, as bound in annotations."""

PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
"""What a preflight answer depends on, for caches between the browser and the gateway."""

MAX_REQUESTED_HEADERS = 64
"""A preflight asking for more headers than this is refused (no browser sends that many)."""

_ALLOWED_ORIGIN: StashKey[str] = StashKey("cors.allowed-origin")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_CORS_PREFIX = b"access-control-"


def _pairs(*headers: tuple[str, str]) -> RawHeaders:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _forbidden(message: str) -> LocalResponse:
    return LocalResponse.json(403, {"error": "cors_forbidden", "message": message}, headers=[("vary", PREFLIGHT_VARY)])


# Made afresh per answer, never shared: later plugins' ``on_local_response`` may edit headers.
_ORIGIN_DENIED = "the request's origin is not allowed to call this route"
_BAD_METHOD = "Access-Control-Request-Method must be one HTTP method"
_BAD_HEADERS = "Access-Control-Request-Headers must be a comma-separated list of header names"
_TOO_MANY_HEADERS = f"a preflight may ask for at most {MAX_REQUESTED_HEADERS} headers"


def requested_headers(values: list[str]) -> list[str] | None:
    """The lowercase header names a preflight asks for, in order, once each; None if malformed."""
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip(" \t").lower()
            if not name:
                continue
            if not _TOKEN.match(name):
                return None
            if name not in names:
                names.append(name)
                if len(names) > MAX_REQUESTED_HEADERS:
                    return names
    return names


def merge_vary(headers: Headers, name: str) -> None:
    """Add ``name`` to the response's ``Vary`` unless it (or ``*``) is already there."""
    values = headers.get_all("vary")
    if not values:
        headers.raw.append((b"vary", name.encode("latin-1")))
        return
    tokens = [token.strip() for value in values for token in value.split(",") if token.strip()]
    lowered = {token.lower() for token in tokens}
    if "*" in lowered or name.lower() in lowered:
        return
    headers.set("vary", ", ".join([*tokens, name]))


class Cors:
    """One route's CORS policy: preflights in ``on_request``, response headers in ``on_response``
    (upstream answers) and ``on_local_response`` (answers the gateway makes, e.g. a 401 or 502)."""

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        self._any_origin = config.allow_origins == ["*"]
        self._origins = OriginMatcher([] if self._any_origin else config.allow_origins)
        self._any_method = config.allow_methods == ["*"]
        self._methods = frozenset(config.allow_methods)
        self._any_header = config.allow_headers == ["*"]
        self._headers = frozenset(name.lower() for name in config.allow_headers)
        credentials = (("access-control-allow-credentials", "true"),) if config.allow_credentials else ()
        exposed = (
            (("access-control-expose-headers", ", ".join(config.expose_headers)),) if config.expose_headers else ()
        )
        self._actual = _pairs(*credentials, *exposed)
        methods = () if self._any_method else (("access-control-allow-methods", ", ".join(config.allow_methods)),)
        max_age = (("access-control-max-age", str(config.max_age)),) if config.max_age is not None else ()
        self._preflight = _pairs(*methods, *credentials, *max_age, ("vary", PREFLIGHT_VARY))

    @classmethod
    def from_binding(cls, config: CorsConfig, binding: Binding) -> Cors:
        """The factory of the ``cors`` PluginSpec: the policy needs nothing from the route."""
        return cls(config)

    def allowed_origin(self, values: list[str]) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for these ``Origin`` headers, or None."""
        if len(values) != 1:
            return None  # no Origin, or several: not a browser's CORS request
        origin = values[0]
        if self._any_origin:
            return "*" if parse_origin(origin) is not None else None
        return origin if self._origins.allows(origin) else None

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        headers = ctx.request.headers
        origins = headers.get_all("origin")
        if not origins:
            return None
        allowed = self.allowed_origin(origins)
        if ctx.method == "OPTIONS":
            methods = headers.get_all("access-control-request-method")
            if methods:
                return self._answer_preflight(allowed, methods, headers.get_all("access-control-request-headers"))
        if allowed is not None:
            ctx.stash[_ALLOWED_ORIGIN] = allowed
        return None

    def _answer_preflight(self, allowed: str | None, methods: list[str], asked: list[str]) -> LocalResponse:
        if allowed is None:
            return _forbidden(_ORIGIN_DENIED)
        if len(methods) != 1 or not _TOKEN.match(methods[0]):
            return _forbidden(_BAD_METHOD)
        method = methods[0]
        if not self._any_method and method not in self._methods:
            return _forbidden(f"method {method} is not allowed cross-origin on this route")
        names = requested_headers(asked)
        if names is None:
            return _forbidden(_BAD_HEADERS)
        if len(names) > MAX_REQUESTED_HEADERS:
            return _forbidden(_TOO_MANY_HEADERS)
        if not self._any_header:
            refused = [name for name in names if name not in self._headers]
            if refused:
                return _forbidden(f"header {refused[0]} is not allowed cross-origin on this route")
        answer = _pairs(("access-control-allow-origin", allowed))
        if self._any_method:
            answer += _pairs(("access-control-allow-methods", method))
        if names:
            answer += _pairs(("access-control-allow-headers", ", ".join(names)))
        answer += self._preflight
        return LocalResponse(204, b"", answer)

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        headers = response.headers
        raw = headers.raw
        if any(name.startswith(_CORS_PREFIX) for name, _ in raw):
            raw[:] = [item for item in raw if not item[0].startswith(_CORS_PREFIX)]
        merge_vary(headers, "Origin")
        allowed = ctx.stash.get(_ALLOWED_ORIGIN)
        if allowed is not None:
            raw.append((b"access-control-allow-origin", allowed.encode("latin-1")))
            raw.extend(self._actual)

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        if ctx.answered_by == NAME:
            return  # a preflight answer: complete as made, and a refusal must stay bare
        raw = response.headers
        # Set, never append: the answer may be a response object its plugin reuses.
        if any(name.startswith(_CORS_PREFIX) for name, _ in raw):
            raw[:] = [item for item in raw if not item[0].startswith(_CORS_PREFIX)]
        merge_vary(Headers(raw), "Origin")
        allowed = ctx.stash.get(_ALLOWED_ORIGIN) or self.allowed_origin(ctx.request.headers.get_all("origin"))
        if allowed is not None:
            raw.append((b"access-control-allow-origin", allowed.encode("latin-1")))
            raw.extend(self._actual)
