"""Where breakers live: one per upstream Service (or per endpoint), shared by routes.

The gateway makes one plugin object per route, but a breaker guards an upstream, and
several routes may point at one Service. The registry hands every route with the same
Service and the same config the same breaker. It holds breakers weakly: when no route uses
one any more, it goes. Endpoint breakers are kept per Service in a bounded LRU map, so
endpoint churn cannot grow memory without limit. Redis links are shared per server.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict

from gateway_core import Endpoint, RouteInfo
from gateway_plugin_circuit_breaker.breaker import Breaker
from gateway_plugin_circuit_breaker.config import CircuitBreakerConfig
from gateway_plugin_circuit_breaker.shared import KEY_PREFIX, RedisLink

MAX_ENDPOINT_BREAKERS = 1_024
"""Endpoint breakers kept per Service; the least recently used is dropped past this."""

Credentials = tuple[str | None, str | None]
"""Redis ``(username, password)``."""


class EndpointBreakers:
    """The breakers of one Service's endpoints, made on first use, least recently used dropped."""

    def __init__(
        self,
        service: str,
        config: CircuitBreakerConfig,
        *,
        link: RedisLink | None,
        digest: str,
        limit: int = MAX_ENDPOINT_BREAKERS,
    ) -> None:
        self.service = service
        self._config = config
        self._link = link
        self._digest = digest
        self._limit = limit
        self._breakers: OrderedDict[Endpoint, Breaker] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, endpoint: Endpoint) -> Breaker:
        """The breaker of ``endpoint``."""
        with self._lock:
            breaker = self._breakers.get(endpoint)
            if breaker is not None:
                self._breakers.move_to_end(endpoint)
                return breaker
            name = f"{self.service}@{endpoint.address}"
            breaker = Breaker(name, self._config, link=self._link, redis_key=_redis_key(name, self._digest))
            self._breakers[endpoint] = breaker
            if len(self._breakers) > self._limit:
                self._breakers.popitem(last=False)
            return breaker

    def __len__(self) -> int:
        return len(self._breakers)


class BreakerRegistry:
    """Breakers of one process, keyed by Service and config."""

    def __init__(self, *, redis_timeout: float = 0.5, redis_retry_after: float = 5.0) -> None:
        self._redis_timeout = redis_timeout
        self._redis_retry_after = redis_retry_after
        self._lock = threading.Lock()
        self._services: weakref.WeakValueDictionary[tuple[str, str], Breaker] = weakref.WeakValueDictionary()
        self._endpoints: weakref.WeakValueDictionary[tuple[str, str], EndpointBreakers] = weakref.WeakValueDictionary()
        self._links: weakref.WeakValueDictionary[tuple[str, Credentials], RedisLink] = weakref.WeakValueDictionary()

    def service(self, route: RouteInfo, config: CircuitBreakerConfig, credentials: Credentials) -> Breaker:
        """The breaker of ``route``'s Service under ``config``."""
        name = f"{route.namespace}/{route.service}"
        canonical = _canonical(config)
        with self._lock:
            breaker = self._services.get((name, canonical))
            if breaker is None:
                link = self._link(config, credentials)
                breaker = Breaker(name, config, link=link, redis_key=_redis_key(name, _digest(canonical)))
                self._services[(name, canonical)] = breaker
            return breaker

    def endpoints(self, route: RouteInfo, config: CircuitBreakerConfig, credentials: Credentials) -> EndpointBreakers:
        """The endpoint breakers of ``route``'s Service under ``config``."""
        name = f"{route.namespace}/{route.service}"
        canonical = _canonical(config)
        with self._lock:
            group = self._endpoints.get((name, canonical))
            if group is None:
                link = self._link(config, credentials)
                group = EndpointBreakers(name, config, link=link, digest=_digest(canonical))
                self._endpoints[(name, canonical)] = group
            return group

    def _link(self, config: CircuitBreakerConfig, credentials: Credentials) -> RedisLink | None:
        if config.redis is None:
            return None
        key = (config.redis, credentials)
        link = self._links.get(key)
        if link is None:
            username, password = credentials
            link = RedisLink(
                config.redis,
                username=username,
                password=password,
                timeout=self._redis_timeout,
                retry_after=self._redis_retry_after,
            )
            self._links[key] = link
        return link


def _canonical(config: CircuitBreakerConfig) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _redis_key(name: str, digest: str) -> str:
    """Routes share state in Redis only with the same breaker name and the same config."""
    return f"{KEY_PREFIX}:{name}:{digest}"
