"""Counter storages, shared per URL by every route of a worker, and what to do when one fails.

A storage belongs to the event loop it is first used on (the memory storage relies on
running on one loop's thread instead of locks; a Redis client pools connections made on its
loop), so storages are kept per running loop and per :class:`StorageKey`, made on a route's
first request, and closed by the plugin's ``gateway_shutdown`` hook. Plugin objects are made
in a worker thread at table build time, so they cannot bind a storage themselves.

A failing Redis is handled here, once for every route using it: each failure is counted in
``gateway_rate_limit_storage_errors_total``, logged at most once per
:data:`LOG_INTERVAL` seconds, and for :data:`RETRY_INTERVAL` seconds after it the storage is
not asked at all, so a dead Redis costs one timeout per interval rather than one per request.
This module must not hold per-client state: that lives in the storages themselves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from prometheus_client import Counter
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway_plugin_rate_limit.memory import LoopMemoryStorage, StorageFullError

logger = logging.getLogger("gateway_plugin_rate_limit")

RETRY_INTERVAL = 1.0
"""Seconds after a storage failure during which requests skip the storage."""
LOG_INTERVAL = 10.0
"""At most one log line per storage per this many seconds while it keeps failing."""
KEY_PREFIX = "gateway-rate-limit"
"""Prefix of every Redis key the plugin writes."""

STRATEGIES: dict[str, Callable[[Storage], RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}
"""The ``limits`` rate limiter of each ``strategy`` name."""

STORAGE_ERRORS = (StorageError, RedisError, TimeoutError, OSError, StorageFullError)
"""What a failing storage raises: redis-py's errors (``limits`` passes them through), a
deadline or socket error, or a full memory storage."""


@functools.cache
def storage_errors_counter() -> Counter:
    """``gateway_rate_limit_storage_errors_total{plugin="rate-limit"}``, registered once per process."""
    return Counter(
        "gateway_rate_limit_storage_errors",
        "Requests the rate-limit plugin decided by on_storage_error because its storage failed or was failing.",
        ["plugin"],
    )


@dataclass(frozen=True, slots=True)
class StorageKey:
    """What makes two bindings share a storage: the URL, the timeout and the credentials."""

    url: str
    timeout: float | None = None
    """Seconds allowed per request for a remote storage; None for memory."""
    username: str | None = None
    password: str | None = None

    @property
    def remote(self) -> bool:
        return self.url != "memory://"


class SharedStorage:
    """One ``limits`` storage on one event loop, its rate limiters, and its failure state."""

    def __init__(self, key: StorageKey) -> None:
        self.key = key
        self.timeout = key.timeout
        self._pool: ConnectionPool | None = None
        self.storage: Storage
        if key.remote:
            # Our own pool: socket timeouts, one immediate retry (a pooled connection that
            # Redis closed), never redis-py's default of ten retries with backoff.
            self._pool = ConnectionPool.from_url(
                key.url,
                socket_timeout=key.timeout,
                socket_connect_timeout=key.timeout,
                retry=Retry(NoBackoff(), 1),
                username=key.username,
                password=key.password,
            )
            self.storage = RedisStorage(
                f"async+{key.url}",
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                connection_pool=self._pool,  # type: ignore[arg-type]  # documented; typed too narrowly
            )
        else:
            self.storage = LoopMemoryStorage()
        self._limiters: dict[str, RateLimiter] = {}
        self._errors = storage_errors_counter().labels("rate-limit")
        self.failing_until = 0.0
        self._failures = 0
        self._unlogged = 0
        self._logged_at = -LOG_INTERVAL

    def limiter(self, strategy: str) -> RateLimiter:
        """The ``limits`` rate limiter of ``strategy`` over this storage (one per strategy)."""
        limiter = self._limiters.get(strategy)
        if limiter is None:
            limiter = self._limiters[strategy] = STRATEGIES[strategy](self.storage)
        return limiter

    def failed(self, error: BaseException | None) -> None:
        """Count a request decided without the storage; ``error`` is what it raised, if it was asked.

        A remote storage is then left alone for :data:`RETRY_INTERVAL` seconds; a full memory
        storage is asked again by the next request (a new key may fit by then).
        """
        self._errors.inc()
        if error is None:
            return
        now = time.monotonic()
        if self.key.remote:
            self.failing_until = now + RETRY_INTERVAL
        self._failures += 1
        if now - self._logged_at < LOG_INTERVAL:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more failures since the last report)" if self._unlogged else ""
        logger.warning(
            "rate-limit storage %s failed: %s%s; requests follow on_storage_error%s",
            self.key.url,
            describe(error),
            more,
            f", next try in {RETRY_INTERVAL:g}s" if self.key.remote else "",
        )
        self._logged_at = now
        self._unlogged = 0

    def recovered(self) -> None:
        """The storage answered after failures: say so once."""
        if self._failures:
            logger.warning("rate-limit storage %s answers again after %d failures", self.key.url, self._failures)
            self._failures = 0
            self._unlogged = 0
            self._logged_at = -LOG_INTERVAL

    async def aclose(self) -> None:
        """Close the Redis connections (memory storages hold none)."""
        if self._pool is not None:
            await self._pool.aclose()


def describe(error: BaseException) -> str:
    """A one-line account of a storage error (the cause ``limits`` wrapped, not a traceback)."""
    cause = error.storage_error if isinstance(error, StorageError) else error
    text = str(cause) or "no answer within storage_timeout"
    return f"{type(cause).__name__}: {text}"


class StorageRegistry:
    """Shared storages by running event loop and :class:`StorageKey`."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[StorageKey, SharedStorage]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: StorageKey) -> SharedStorage:
        """The storage for ``key`` on the running loop, made on first use."""
        loop = asyncio.get_running_loop()
        storages = self._by_loop.get(loop)
        if storages is None:
            storages = self._by_loop[loop] = {}
        shared = storages.get(key)
        if shared is None:
            shared = storages[key] = SharedStorage(key)
        return shared

    async def close_loop(self) -> None:
        """Close and forget the running loop's storages (at worker shutdown)."""
        storages = self._by_loop.pop(asyncio.get_running_loop(), {})
        for shared in storages.values():
            try:
                await shared.aclose()
            except Exception as exc:  # shutting down: report, do not stop the other closes
                logger.warning("closing rate-limit storage %s failed: %s", shared.key.url, describe(exc))


STORAGES = StorageRegistry()
"""The process's storages. Process-wide on purpose: every route of a worker shares them."""
