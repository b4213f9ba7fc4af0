"""Cookie session affinity: a client keeps the endpoint that served it first.

Wraps any strategy. A request whose affinity cookie names a live endpoint of this backend goes
there; any other request (no cookie, an endpoint gone, ejected or already tried by this
request) is placed by the strategy, and :meth:`CookieAffinity.stamp` sets the cookie on the
response naming the endpoint that answered.

The cookie value is a BLAKE2b digest of the endpoint's ``ip:port``, not the address: every
worker, replica and restart computes the same value, so replicas agree without sharing state.
It keeps addresses out of sight, not secret: whoever can enumerate the cluster's address range
could match digests to addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from time import monotonic

from gateway_core.manifests.upstream_policy import AffinityCookie
from gateway_core.messages import Balancer, Endpoint, RequestContext, UpstreamResponse
from gateway_core.transport.balancing.cookies import cookie_value
from gateway_core.transport.endpoint_state import EndpointState, EndpointStates


def affinity_token(endpoint: Endpoint) -> str:
    """The cookie value that names ``endpoint`` (20 hex digits, the same in every process)."""
    return hashlib.blake2b(endpoint.address.encode(), digest_size=10, person=b"mng-affinity").hexdigest()


def set_cookie_header(config: AffinityCookie, token: str) -> str:
    """The ``Set-Cookie`` value naming ``token`` with the configured attributes."""
    parts = [f"{config.name}={token}", f"Path={config.path}"]
    if config.max_age is not None:
        parts.append(f"Max-Age={config.max_age}")
    parts += ["HttpOnly", f"SameSite={config.same_site}"]
    if config.secure:
        parts.append("Secure")
    return "; ".join(parts)


class CookieAffinity:
    """Sticky sessions over ``strategy``: the affinity cookie picks, else the strategy does."""

    __slots__ = ("strategy", "config", "_name", "_by_token", "_tokens", "_set_cookie", "_registry", "_states")

    def __init__(
        self,
        strategy: Balancer,
        endpoints: tuple[Endpoint, ...],
        config: AffinityCookie,
        registry: EndpointStates | None = None,
    ) -> None:
        self.strategy = strategy
        self.config = config
        self._name = config.name.encode("latin-1")
        tokens = {endpoint: affinity_token(endpoint) for endpoint in endpoints}
        self._tokens = {endpoint: token.encode("ascii") for endpoint, token in tokens.items()}
        self._by_token = {token: endpoint for endpoint, token in self._tokens.items()}
        self._set_cookie = {endpoint: set_cookie_header(config, token) for endpoint, token in tokens.items()}
        self._registry = registry if registry is not None else EndpointStates()
        self._states: dict[bytes, EndpointState] = {}
        """States by token, looked up on first use (in the event loop, like the strategies do)."""

    def pick(self, ctx: RequestContext | None, avoid: Collection[Endpoint] = ()) -> Endpoint | None:
        """The cookie's endpoint when it is live and not yet tried by this request, else the strategy's."""
        if ctx is not None:
            token = cookie_value(ctx.request.headers.raw, self._name)
            if token is not None:
                endpoint = self._by_token.get(token)
                if endpoint is not None and endpoint not in avoid and not self._ejected(token, endpoint):
                    return endpoint
        return self.strategy.pick(ctx, avoid)

    def stamp(self, ctx: RequestContext | None, endpoint: Endpoint, response: UpstreamResponse) -> None:
        """Set the affinity cookie on ``response`` unless the request already named ``endpoint``."""
        token = self._tokens.get(endpoint)
        if token is None:
            return
        if ctx is not None and cookie_value(ctx.request.headers.raw, self._name) == token:
            return
        response.headers.add("set-cookie", self._set_cookie[endpoint])

    def _ejected(self, token: bytes, endpoint: Endpoint) -> bool:
        state = self._states.get(token)
        if state is None:
            state = self._states[token] = self._registry.get(endpoint)
        until = state.ejected_until
        return until > 0.0 and until > monotonic()
