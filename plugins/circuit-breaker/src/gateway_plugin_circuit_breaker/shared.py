"""The Redis side of shared breaker state: a sync client, one worker thread, and its health.

pybreaker's ``CircuitRedisStorage`` talks to Redis with the blocking ``redis`` client, so
nothing here runs on the event loop: every Redis job goes to one worker thread per Redis
server (jobs for one server run in order), with short socket timeouts and no client-side
retries. When a job meets a Redis error the link is *down* for ``retry_after`` seconds —
logged once — and breakers keep their state in local memory meanwhile. The queue of jobs is
bounded: past ``max_pending`` a job is refused and the breaker records locally instead.

This module must not import the gateway: it knows Redis, pybreaker's storage and threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pybreaker
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger("gateway_plugin_circuit_breaker")

T = TypeVar("T")

KEY_PREFIX = "meta-native:circuit-breaker"
"""Prefix of every Redis key the plugin's breakers use (pybreaker adds ``:pybreaker:<field>``)."""


class WatchedRedis(Redis):
    """A Redis client that remembers a failed command.

    pybreaker's storage catches ``RedisError`` itself and carries on with fallback values
    (state ``closed``, counters 0). The link must know, so it can tell the breaker to use
    local state instead of those made-up values.
    """

    failed: bool = False

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except RedisError:
            self.failed = True
            raise

    def transaction(self, func: Callable[..., None], *watches: Any, **kwargs: Any) -> Any:
        try:
            return super().transaction(func, *watches, **kwargs)
        except RedisError:
            self.failed = True
            raise


class _StorageLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """pybreaker logs every swallowed RedisError with a traceback, for every command.

    The link reports an outage once, with its cause; these reports go to DEBUG.
    """

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.debug(msg, *args)


class RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, with its error reports routed to DEBUG (see :class:`_StorageLog`)."""

    logger = _StorageLog(logging.getLogger("gateway_plugin_circuit_breaker.redis"), {})  # type: ignore[assignment]


class RedisLink:
    """One Redis server as this process uses it for breaker state."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        max_pending: int = 1_000,
    ) -> None:
        self.url = url
        """For logs: credentials never appear in it (the config refuses them)."""
        self.timeout = timeout
        self._username = username
        self._password = password
        self._retry_after = retry_after
        self._max_pending = max_pending
        self._client: WatchedRedis | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circuit-breaker-redis")
        self._lock = threading.Lock()
        self._pending = 0
        self._down_until = 0.0
        self._healthy = True

    def available(self) -> bool:
        """False while the link is resting after a Redis error."""
        return time.monotonic() >= self._down_until

    def submit(self, job: Callable[[WatchedRedis], T]) -> Future[T | None] | None:
        """Run ``job(client)`` on the worker thread.

        None when the link is down or its queue is full: the caller uses local state. The
        future never raises: its result is None when Redis failed during the job.
        """
        with self._lock:
            if not self.available() or self._pending >= self._max_pending:
                return None
            self._pending += 1
        return self._executor.submit(self._run, job)

    def _run(self, job: Callable[[WatchedRedis], T]) -> T | None:
        try:
            if not self.available():  # went down while this job waited in the queue
                return None
            client = self._connect()
            client.failed = False
            try:
                result = job(client)
            except RedisError as exc:
                self._mark_down(exc)
                return None
            if client.failed:
                self._mark_down(None)
                return None
            self._mark_up()
            return result
        except Exception as exc:  # garbage in Redis, a pybreaker surprise: never kill the worker
            logger.exception("circuit breaker: a Redis job failed")
            self._mark_down(exc)
            return None
        finally:
            with self._lock:
                self._pending -= 1

    def _connect(self) -> WatchedRedis:
        client = self._client
        if client is None:
            client = self._client = WatchedRedis(
                connection_pool=ConnectionPool.from_url(
                    self.url,
                    username=self._username,
                    password=self._password,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                    health_check_interval=30,
                )
            )
        return client

    def _mark_down(self, cause: BaseException | None) -> None:
        self._down_until = time.monotonic() + self._retry_after
        if self._healthy:
            self._healthy = False
            logger.warning(
                "circuit breaker: Redis at %s failed (%s); breakers use local memory state, retrying in %gs",
                self.url,
                cause or "a command failed",
                self._retry_after,
            )

    def _mark_up(self) -> None:
        if not self._healthy:
            self._healthy = True
            logger.info("circuit breaker: Redis at %s is reachable again; breaker state is shared", self.url)

    def close(self) -> None:
        """Stop the worker thread (after queued jobs) and close the client's connections."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()  # a pool passed in is not closed with the client
            self._client = None
