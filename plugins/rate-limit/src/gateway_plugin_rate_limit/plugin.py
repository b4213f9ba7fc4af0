"""The ``rate-limit`` plugin object: one per route, counting that route's requests.

Per request it builds one counter key and calls ``hit()`` once per limit (shortest window
first, stopping at the first refusal); window statistics are read only for a ``429`` and,
when ``response_headers`` is on, for the headers of a passing response. Everything else —
parsed limits, the scope, the constant answers — is prepared at bind time.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable

from limits import RateLimitItem
from limits.aio.strategies import RateLimiter

from gateway_core import Binding, LocalResponse, PluginConfigError, RequestContext, StashKey, UpstreamResponse
from gateway_plugin_rate_limit.config import RateLimitConfig
from gateway_plugin_rate_limit.memory import StorageFullError
from gateway_plugin_rate_limit.storage import STORAGE_ERRORS, STORAGES, SharedStorage, StorageKey

MAX_KEY_LENGTH = 64
"""Longer key values (header values, identities, odd forwarded addresses) are counted by their
SHA-256, so a counter key's size is bounded."""

UNAVAILABLE = LocalResponse.json(
    503,
    {"error": "rate_limit_unavailable", "message": "the rate limit cannot be checked right now"},
    headers=[("Retry-After", "1")],
)

Quota = tuple[int, int, int]
"""(limit, remaining, seconds until reset) of one rate limit, for the RateLimit-* headers."""

QUOTA: StashKey[Quota] = StashKey("rate-limit.quota")

_QUOTA_HEADERS = frozenset({b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset", b"ratelimit-policy"})


def _bounded(value: str) -> str:
    if len(value) > MAX_KEY_LENGTH:
        return "sha256=" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return value


def scope_of(config: RateLimitConfig, binding: Binding) -> str:
    """The namespace of this binding's counters: the strategy, then the route, its Ingress or nothing.

    The strategy is part of it because ``limits`` names a limit's fixed- and moving-window
    counters alike, and in Redis they are different types: switching an Ingress from one
    strategy to the other must not meet the old counters.
    """
    route = binding.route
    if config.scope == "route":
        return f"{config.strategy}|route={route.id}"
    if config.scope == "ingress":
        return f"{config.strategy}|ingress={route.ingress_ref}"
    return f"{config.strategy}|global"


def policy_of(items: list[RateLimitItem]) -> str:
    """The ``RateLimit-Policy`` value: ``10;w=1, 1000;w=3600``."""
    return ", ".join(f"{item.amount};w={item.get_expiry()}" for item in items)


def seconds_until(reset_time: float) -> int:
    """Whole seconds from now until ``reset_time`` (epoch), at least 1."""
    return max(1, math.ceil(reset_time - time.time()))


class RateLimit:
    """Counts requests per key and answers ``429`` once a limit is used up."""

    def __init__(self, config: RateLimitConfig, *, scope: str, storage: StorageKey) -> None:
        self.config = config
        self._items = config.rate_limits()
        self._storage_key = storage
        self._strategy = config.strategy
        self._shared: SharedStorage | None = None
        self._limiter: RateLimiter | None = None
        self._policy = policy_of(self._items)
        self._policy_raw = self._policy.encode("latin-1")
        self._on_error = UNAVAILABLE if config.on_storage_error == "deny" else None
        self._key: Callable[[RequestContext], str] = self._key_function(config, scope)
        self._report = config.response_headers

    @classmethod
    def from_binding(cls, config: RateLimitConfig, binding: Binding) -> RateLimit:
        """The plugin object for one route (``PluginSpec.factory``)."""
        username = password = None
        if config.storage_secret is not None:
            data = binding.secrets(config.storage_secret)
            if data is None:
                raise PluginConfigError(
                    f"Secret {config.storage_secret!r} not found in namespace {binding.route.namespace!r}"
                )
            if "password" not in data:
                raise PluginConfigError(f"Secret {config.storage_secret!r} has no `password` entry")
            password = data["password"].decode("utf-8", "replace")
            username = data["username"].decode("utf-8", "replace") if "username" in data else None
        timeout = config.storage_timeout if config.storage != "memory://" else None
        storage = StorageKey(config.storage, timeout, username, password)
        plugin_class = RateLimitWithHeaders if config.response_headers else RateLimit
        return plugin_class(config, scope=scope_of(config, binding), storage=storage)

    @staticmethod
    def _key_function(config: RateLimitConfig, scope: str) -> Callable[[RequestContext], str]:
        """How a request's counter key is made: the scope, the kind of key, the value."""
        by_ip = f"{scope}|ip:"
        if config.key == "client_ip":
            return lambda ctx: by_ip + _bounded(ctx.client_ip)
        if config.key == "identity":
            by_identity = f"{scope}|id:"

            def identity(ctx: RequestContext) -> str:
                if ctx.identity:
                    return by_identity + _bounded(ctx.identity)
                return by_ip + _bounded(ctx.client_ip)

            return identity
        assert config.header is not None
        name = config.header.lower().encode("latin-1")
        by_header = f"{scope}|h:"

        def header(ctx: RequestContext) -> str:
            for item_name, value in ctx.request.headers.raw:
                if item_name == name and value:
                    return by_header + _bounded(value.decode("latin-1"))
            return by_ip + _bounded(ctx.client_ip)

        return header

    def _bind(self) -> tuple[SharedStorage, RateLimiter]:
        """The shared storage of the running loop (on the first request: the factory runs in a thread)."""
        shared = STORAGES.get(self._storage_key)
        self._shared, self._limiter = shared, shared.limiter(self._strategy)
        return shared, self._limiter

    async def on_request(self, ctx: RequestContext) -> LocalResponse | None:
        shared, limiter = self._shared, self._limiter
        if shared is None or limiter is None:
            shared, limiter = self._bind()
        key = self._key(ctx)
        if shared.timeout is None:  # memory: never waits; fails only when full
            try:
                for item in self._items:
                    if not await limiter.hit(item, key):
                        return await self._refuse(limiter, item, key, None)
            except StorageFullError as exc:
                shared.failed(exc)
                return self._on_error
            if self._report:
                await self._quota(ctx, limiter, key)
            return None
        return await self._remote(ctx, shared, limiter, key)

    async def _remote(
        self, ctx: RequestContext, shared: SharedStorage, limiter: RateLimiter, key: str
    ) -> LocalResponse | None:
        """``on_request`` over a remote storage: one deadline for every call, failures handled."""
        if shared.failing_until > time.monotonic():
            shared.failed(None)
            return self._on_error
        deadline = asyncio.get_running_loop().time() + (shared.timeout or 0.0)
        refused: RateLimitItem | None = None
        try:
            async with asyncio.timeout_at(deadline):
                for item in self._items:
                    if not await limiter.hit(item, key):
                        refused = item
                        break
        except STORAGE_ERRORS as exc:
            shared.failed(exc)
            return self._on_error
        if shared.failing_until:
            shared.failing_until = 0.0
            shared.recovered()
        if refused is not None:
            return await self._refuse(limiter, refused, key, deadline)
        if self._report:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._quota(ctx, limiter, key)
            except STORAGE_ERRORS:
                pass  # the request is within its limits; it just goes without the headers
        return None

    async def _quota(self, ctx: RequestContext, limiter: RateLimiter, key: str) -> None:
        """Stash the quota closest to exhaustion for ``on_response`` (``response_headers``)."""
        closest: Quota | None = None
        for item in self._items:
            stats = await limiter.get_window_stats(item, key)
            remaining = max(0, stats.remaining)
            if closest is None or remaining < closest[1]:
                closest = (item.amount, remaining, seconds_until(stats.reset_time))
        if closest is not None:
            ctx.stash[QUOTA] = closest

    async def _refuse(
        self, limiter: RateLimiter, item: RateLimitItem, key: str, deadline: float | None
    ) -> LocalResponse:
        """The ``429`` for the limit that refused; its reset read from the storage when it answers."""
        reset = item.get_expiry()
        try:
            async with asyncio.timeout_at(deadline):
                stats = await limiter.get_window_stats(item, key)
            reset = min(reset, seconds_until(stats.reset_time))
        except STORAGE_ERRORS:
            pass  # the whole window is an upper bound on the wait
        reset_text = str(reset)
        return LocalResponse.json(
            429,
            {"error": "rate_limited", "message": f"too many requests: the limit is {item}"},
            headers=[
                ("Retry-After", reset_text),
                ("RateLimit-Limit", str(item.amount)),
                ("RateLimit-Remaining", "0"),
                ("RateLimit-Reset", reset_text),
                ("RateLimit-Policy", self._policy),
            ],
        )


class RateLimitWithHeaders(RateLimit):
    """:class:`RateLimit` that also puts the ``RateLimit-*`` headers on passing responses.

    A class of its own so that routes without ``response_headers`` have no ``on_response``
    phase to run at all.
    """

    async def on_response(self, ctx: RequestContext, response: UpstreamResponse) -> None:
        quota = ctx.stash.get(QUOTA)
        if quota is None:  # the storage failed: no numbers to give
            return
        raw = response.headers.raw  # one pass instead of four Headers.set() calls
        raw[:] = [item for item in raw if item[0] not in _QUOTA_HEADERS]
        raw += [
            (b"ratelimit-limit", b"%d" % quota[0]),
            (b"ratelimit-remaining", b"%d" % quota[1]),
            (b"ratelimit-reset", b"%d" % quota[2]),
            (b"ratelimit-policy", self._policy_raw),
        ]
