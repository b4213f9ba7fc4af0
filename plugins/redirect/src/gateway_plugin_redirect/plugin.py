"""The ``redirect`` plugin objects: one per route, with every target worked out at bind time.

Same-host redirects (``to`` as a path, ``app_root``) answer with a relative ``Location``, so
the client stays on the host and scheme it used and no request header ever picks the host.
Only the HTTPS redirect names a host: the one the client asked for, checked against a
strict pattern (a Host that is not a plain name or address gets ``400``, never a redirect).
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_from_bytes, urlsplit

from gateway_core import Binding, Headers, LocalResponse, RequestContext, UpstreamResponse
from gateway_plugin_redirect.config import HOST, RedirectConfig

ACME_CHALLENGE = "/.well-known/acme-challenge/"
"""Where ACME HTTP-01 challenges are served: never redirected to HTTPS (RFC 8555 §8.3)."""

_URL_SAFE = "/%:@!$&'()*+,;=-._~?"
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_SLASHES = re.compile(rb"/{2,}")
_INVALID_HOST = LocalResponse.error(400, "invalid_host", "the Host header is not a valid host name")
_MISSING_HOST = LocalResponse.error(400, "invalid_host", "a Host header is required for this redirect")


def is_https(ctx: RequestContext) -> bool:
    """Whether the client's request arrived over HTTPS.

    Reads the ``X-Forwarded-Proto`` the gateway put on the upstream request: a trusted
    proxy's value, else the listener's scheme; a client's own value is never seen here.
    """
    proto = ctx.request.headers.get("x-forwarded-proto")
    if proto is None:
        return ctx.scheme == "https"
    return proto.partition(",")[0].strip().lower() == "https"


def _redirect(status: int, location: str, extra: tuple[tuple[str, str], ...] = ()) -> LocalResponse:
    return LocalResponse.json(status, {"location": location}, headers=(("location", location), *extra))


class _Target:
    """A ``to`` target split once: what comes before the suffix, its query and fragment."""

    __slots__ = ("base", "bare", "query", "fragment")

    def __init__(self, to: str) -> None:
        rest, _, self.fragment = to.partition("#")
        self.bare, _, self.query = rest.partition("?")
        if self.bare.startswith("/"):
            self.base = self.bare.rstrip("/")
        else:
            parts = urlsplit(self.bare)
            self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    def join(self, suffix: str, query: str) -> str:
        """The target with ``suffix`` (``""`` or starting with ``/``) and the request's query."""
        location = self.base + suffix if suffix else self.bare
        if not location:
            location = "/"
        joined = "&".join(part for part in (self.query, query) if part)
        if joined:
            location += "?" + joined
        if self.fragment:
            location += "#" + self.fragment
        return location


class Redirect:
    """Answers the route's redirects in ``on_request``; everything else passes through."""

    def __init__(self, config: RedirectConfig, *, route_path: str, path_type: str) -> None:
        self.config = config
        self._hsts: tuple[tuple[str, str], ...] = (
            (("strict-transport-security", config.hsts.header_value()),) if config.hsts is not None else ()
        )
        self._target = _Target(config.to) if config.to is not None else None
        # The route's path without its trailing '/', or None when the route has no suffix (Exact).
        self._prefix: str | None = None if path_type == "Exact" else route_path.rstrip("/")
        self._prefix_bytes = (self._prefix or "").encode("utf-8")
        self._fixed: tuple[LocalResponse, LocalResponse] | None = None
        if config.to is not None and not config.preserve_path:
            self._fixed = (
                _redirect(config.code, config.to),
                _redirect(config.code, config.to, self._hsts),
            )
        self._https_port = "" if config.https_port == 443 else f":{config.https_port}"

    @classmethod
    def from_binding(cls, config: RedirectConfig, binding: Binding) -> Redirect | Hsts:
        """The plugin object for ``config``: only the phases the config needs."""
        if config.to is None and config.app_root is None and not config.https_redirect:
            return Hsts(config)
        plugin_class = RedirectWithHsts if config.hsts is not None else Redirect
        return plugin_class(config, route_path=binding.route.path, path_type=binding.route.path_type)

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        config = self.config
        secure = is_https(ctx)
        if config.https_redirect and not secure and not ctx.path.startswith(ACME_CHALLENGE):
            return self._to_https(ctx)
        extra = self._hsts if secure else ()
        if self._fixed is not None:
            return self._fixed[1] if secure else self._fixed[0]
        if self._target is not None:
            return _redirect(config.code, self._preserved(ctx), extra)
        if config.app_root is not None and ctx.path == "/":
            _, _, query = ctx.request.target.partition(b"?")
            location = config.app_root + ("?" + _quoted(query) if query else "")
            return _redirect(302, location, extra)
        return None

    def _to_https(self, ctx: RequestContext) -> LocalResponse:
        """``https://`` + the client's host (port replaced by ``https_port``) + path and query."""
        host = ctx.request.headers.get("x-forwarded-host") or ""
        host = host.partition(",")[0].strip()  # a trusted proxy chain: the first is the client's
        if not host:
            return _MISSING_HOST
        if not HOST.match(host):
            return _INVALID_HOST
        host = host[: host.index("]") + 1] if host.startswith("[") else host.partition(":")[0]
        location = f"https://{host.lower()}{self._https_port}{_quoted(ctx.request.target)}"
        return _redirect(self.config.https_code, location)

    def _preserved(self, ctx: RequestContext) -> str:
        """``to`` with the request path after the route's path, and the request's query."""
        assert self._target is not None
        raw, _, query = ctx.request.target.partition(b"?")
        raw = _SLASHES.sub(b"/", raw)  # as routing matched it; no '//' can reach the Location
        suffix = ""
        prefix = self._prefix
        if prefix is not None:
            size = len(self._prefix_bytes)
            if raw.startswith(self._prefix_bytes) and raw[size : size + 1] in (b"", b"/"):
                suffix = _quoted(raw[size:])
            else:  # the client percent-encoded part of the route's path: use the decoded path
                path = re.sub("/{2,}", "/", ctx.path)
                rest = path[len(prefix) :]
                if path.startswith(prefix) and rest[:1] in ("", "/"):
                    suffix = quote(rest, safe=_PATH_SAFE)
        return self._target.join(suffix, _quoted(query))


class Hsts:
    """Puts ``Strict-Transport-Security`` on responses to HTTPS requests."""

    def __init__(self, config: RedirectConfig) -> None:
        assert config.hsts is not None
        self.config = config
        self._value = config.hsts.header_value()

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        if is_https(ctx):
            response.headers.set("strict-transport-security", self._value)

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        """The gateway's own answers to HTTPS requests (a 401, a 502) carry HSTS too."""
        if is_https(ctx):
            Headers(response.headers).set("strict-transport-security", self._value)


class RedirectWithHsts(Redirect):
    """:class:`Redirect` that also adds HSTS to the upstream's responses to HTTPS requests."""

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        if is_https(ctx):
            response.headers.set("strict-transport-security", self._hsts[0][1])

    async def on_local_response(self, ctx: RequestContext, response: LocalResponse) -> None:
        """Every answer to an HTTPS request carries HSTS once, the plugin's own redirects included."""
        if is_https(ctx):
            Headers(response.headers).set("strict-transport-security", self._hsts[0][1])


def _quoted(raw: bytes) -> str:
    """Raw request bytes as Location text: existing escapes kept, anything unsafe escaped."""
    return quote_from_bytes(raw, safe=_URL_SAFE)
