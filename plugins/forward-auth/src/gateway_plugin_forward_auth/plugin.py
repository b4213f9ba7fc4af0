"""The ``forward-auth`` plugin object: asks the route's auth service about each request.

Everything that does not depend on the request (header name sets, the parsed URL, the
cache) is prepared once in :meth:`ForwardAuth.from_binding`; ``on_request`` only builds the
auth request's headers, awaits the answer and acts on it.
"""

from __future__ import annotations

import hashlib
import logging

from gateway_core import Binding, LocalResponse, PluginConfigError, RequestContext
from gateway_core.messages import RawHeaders
from gateway_plugin_forward_auth.cache import TtlCache
from gateway_plugin_forward_auth.client import AuthAnswer, AuthService, AuthServiceError
from gateway_plugin_forward_auth.config import ForwardAuthConfig
from gateway_plugin_forward_auth.grant import AuthAnswerError, Grant, grant_from

logger = logging.getLogger("gateway_plugin_forward_auth")

_UNAVAILABLE = LocalResponse.error(503, AuthServiceError.code, "the authentication service is unavailable")
_UNUSABLE = LocalResponse.error(503, AuthAnswerError.code, "the authentication service gave an unusable answer")

_GATEWAY_FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"}
)
"""Headers the gateway already computed for the upstream (trusted-proxy aware): sent as they are."""

_ALWAYS_RELAYED = frozenset({b"content-type", b"content-encoding"})
"""Headers that describe a relayed body, so they go with it."""

_NOT_CACHEABLE = (b"no-store", b"no-cache")


def _lower_bytes(names: list[str]) -> frozenset[bytes]:
    return frozenset(name.lower().encode("latin-1") for name in names)


def _safe(value: bytes) -> bool:
    return b"\r" not in value and b"\n" not in value and b"\0" not in value


class ForwardAuth:
    """Forwards the request's credentials to an auth service and obeys its answer."""

    def __init__(self, config: ForwardAuthConfig, route_id: str) -> None:
        self.config = config
        self._route_id = route_id
        self._service = AuthService(config.url, config.timeout)
        self._forwarded = _lower_bytes(config.request_headers)
        self._copied = _lower_bytes(config.upstream_headers)
        self._identity_from = config.identity_from.lower().encode("latin-1") if config.identity_from else None
        self._relayed = _lower_bytes(config.client_headers) | _ALWAYS_RELAYED
        self._cache: TtlCache[Grant] | None = (
            TtlCache(config.cache_ttl, config.cache_max_entries) if config.cache_ttl > 0 else None
        )

    @classmethod
    def from_binding(cls, config: ForwardAuthConfig, binding: Binding) -> ForwardAuth:
        try:
            return cls(config, binding.route.id)
        except ValueError as exc:
            raise PluginConfigError(str(exc)) from None

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        headers = self._auth_headers(ctx)
        cache = self._cache
        key = self._cache_key(ctx, headers) if cache is not None else b""
        if cache is not None:
            grant = cache.get(key)
            if grant is not None:
                return self._admit(ctx, grant)
        try:
            answer = await self._service.ask(headers)
        except AuthServiceError as exc:
            logger.warning("forward-auth on route %s: the auth service failed: %s", self._route_id, exc)
            return _UNAVAILABLE
        status = answer.status
        if 200 <= status < 300:
            try:
                grant = grant_from(answer.headers, copied=self._copied, identity_from=self._identity_from)
            except AuthAnswerError as exc:
                logger.warning("forward-auth on route %s: unusable %d answer: %s", self._route_id, status, exc)
                return _UNUSABLE
            if cache is not None and _cacheable(answer):
                cache.put(key, grant)
            return self._admit(ctx, grant)
        if 300 <= status < 500:
            return self._relay(answer)
        logger.warning("forward-auth on route %s: the auth service answered %d", self._route_id, status)
        return _UNAVAILABLE

    def _admit(self, ctx: RequestContext, grant: Grant) -> LocalResponse | None:
        if grant.apply(ctx, self._copied, self.config.identity_header):
            return None
        return _UNUSABLE  # unreachable in practice: grant_from checked the identity already

    def _auth_headers(self, ctx: RequestContext) -> RawHeaders:
        """The configured client headers, the gateway's forwarding headers, method and URI."""
        out: RawHeaders = []
        proto = b""
        host = b""
        forwarded = self._forwarded
        for name, value in ctx.request.headers.raw:
            if name in forwarded:
                out.append((name, value))
            elif name in _GATEWAY_FORWARDED:
                out.append((name, value))
                if name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    host = value
        method = ctx.method.encode("latin-1")
        target = ctx.request.target
        url = (proto or ctx.scheme.encode("latin-1")) + b"://" + (host or ctx.host.encode("latin-1")) + target
        out += (
            (b"x-forwarded-method", method),
            (b"x-forwarded-uri", target),
            (b"x-original-method", method),
            (b"x-original-uri", target),
            (b"x-original-url", url),
        )
        return out

    def _cache_key(self, ctx: RequestContext, headers: RawHeaders) -> bytes:
        """SHA-256 over the forwarded client headers (and method, URL if so configured)."""
        digest = hashlib.sha256()
        forwarded = self._forwarded
        for name, value in headers:
            if name in forwarded or (self.config.cache_key_includes_uri and name == b"x-original-url"):
                digest.update(len(name).to_bytes(2, "big") + name + len(value).to_bytes(4, "big") + value)
        if self.config.cache_key_includes_uri:
            digest.update(b"\0" + ctx.method.encode("latin-1"))
        return digest.digest()

    def _relay(self, answer: AuthAnswer) -> LocalResponse:
        """The auth service's 3xx/4xx answer as the client's: status, chosen headers, body."""
        relayed = self._relayed
        headers = [(name, value) for name, value in answer.headers if name in relayed and _safe(value)]
        if answer.truncated:
            logger.info(
                "forward-auth on route %s: the auth answer's body was cut to %d bytes", self._route_id, len(answer.body)
            )
        return LocalResponse(status=answer.status, body=answer.body, headers=headers)


def _cacheable(answer: AuthAnswer) -> bool:
    for name, value in answer.headers:
        if name == b"cache-control":
            directives = {part.strip().split(b"=", 1)[0].lower() for part in value.split(b",")}
            if any(directive in directives for directive in _NOT_CACHEABLE):
                return False
    return True
