"""The event-loop memory storage: the ``limits`` strategies over it, expiry, its size bound."""

from __future__ import annotations

import asyncio

import pytest
from gateway_plugin_rate_limit import RateLimit, RateLimitConfig
from gateway_plugin_rate_limit.memory import LoopMemoryStorage, StorageFullError
from gateway_plugin_rate_limit.storage import STORAGES, StorageKey
from limits import parse
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from gateway_core import Binding, Headers, LocalResponse, RequestContext, RouteInfo, UpstreamRequest


class Clock:
    """A clock the test moves by hand (the storage takes it as a parameter)."""

    def __init__(self, now: float = 1_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_fixed_window_counts_then_starts_a_new_window_and_forgets_old_keys() -> None:
    clock = Clock()
    storage = LoopMemoryStorage(clock=clock)
    limiter, item = FixedWindowRateLimiter(storage), parse("2/second")
    assert [await limiter.hit(item, "a") for _ in range(3)] == [True, True, False]
    assert await limiter.hit(item, "b")
    stats = await limiter.get_window_stats(item, "a")
    assert (stats.remaining, stats.reset_time) == (0, clock.now + 1)
    clock.now += 1.0
    assert await limiter.hit(item, "c")  # any call drops what expired
    assert len(storage) == 1
    assert await limiter.hit(item, "a")


async def test_moving_window_is_exact_and_its_timestamps_expire() -> None:
    clock = Clock()
    storage = LoopMemoryStorage(clock=clock)
    limiter, item = MovingWindowRateLimiter(storage), parse("3 per 10 seconds")
    for _ in range(2):
        assert await limiter.hit(item, "a")
    clock.now += 6
    assert await limiter.hit(item, "a")
    assert not await limiter.hit(item, "a")
    stats = await limiter.get_window_stats(item, "a")
    assert (stats.remaining, stats.reset_time) == (0, clock.now - 6 + 10)
    clock.now += 4  # the first two leave the window
    assert [await limiter.hit(item, "a") for _ in range(3)] == [True, True, False]
    clock.now += 10
    assert await limiter.hit(item, "b")
    assert len(storage) == 1  # only b's timestamp is left


async def test_sliding_window_counter_weighs_the_previous_window() -> None:
    clock = Clock(1_000_000.0)  # the start of a 10-second window
    storage = LoopMemoryStorage(clock=clock)
    limiter, item = SlidingWindowCounterRateLimiter(storage), parse("4 per 10 seconds")
    assert [await limiter.hit(item, "a") for _ in range(5)] == [True] * 4 + [False]
    clock.now += 12.5  # a quarter into the next window: the previous counts 4 * 0.75 = 3
    assert [await limiter.hit(item, "a") for _ in range(2)] == [True, False]
    clock.now += 5  # three quarters in: 4 * 0.25 + 1 = 2
    assert [await limiter.hit(item, "a") for _ in range(3)] == [True, True, False]


async def test_the_entry_bound_refuses_new_counts_until_room_is_made() -> None:
    clock = Clock()
    storage = LoopMemoryStorage(max_entries=3, clock=clock)
    fixed, moving = FixedWindowRateLimiter(storage), MovingWindowRateLimiter(storage)
    item = parse("5/second")
    assert await fixed.hit(item, "a")
    assert await moving.hit(item, "b")
    assert await moving.hit(item, "b")
    assert await fixed.hit(item, "a")  # an existing counter still counts
    with pytest.raises(StorageFullError):
        await fixed.hit(item, "c")
    with pytest.raises(StorageFullError):
        await moving.hit(item, "b")
    clock.now += 1
    assert await fixed.hit(item, "c")
    assert len(storage) == 1


ROUTE = RouteInfo(
    id="default/api:*:Prefix:/",
    namespace="default",
    ingress="api",
    host="*",
    path="/",
    path_type="Prefix",
    service="api",
)


def context(client_ip: str) -> RequestContext:
    request = UpstreamRequest("GET", b"/", Headers([(b"host", b"api.test")]))
    return RequestContext(
        scope={}, method="GET", host="api.test", path="/", scheme="http", client_ip=client_ip, peer_ip=client_ip,
        route=ROUTE, request=request,
    )  # fmt: skip


@pytest.mark.parametrize(("policy", "status"), [("allow", None), ("deny", 503)])
async def test_a_full_memory_storage_is_a_storage_failure_decided_by_on_storage_error(
    policy: str, status: int | None
) -> None:
    config = RateLimitConfig.model_validate({"limit": "5/minute", "on_storage_error": policy})
    plugin = RateLimit.from_binding(config, Binding(plugin="rate-limit", route=ROUTE, secrets=lambda name: None))
    shared = STORAGES.get(StorageKey("memory://"))  # this test's event loop has its own
    assert isinstance(shared.storage, LoopMemoryStorage)
    shared.storage.max_entries = 2
    try:
        assert await plugin.on_request(context("192.0.2.1")) is None
        assert await plugin.on_request(context("192.0.2.2")) is None
        answer = await plugin.on_request(context("192.0.2.3"))
        assert (answer.status if isinstance(answer, LocalResponse) else None) == status
        assert await plugin.on_request(context("192.0.2.1")) is None  # known clients still count
    finally:
        await STORAGES.close_loop()


async def _made_on_a_loop_of_its_own(key: StorageKey) -> object:
    shared = STORAGES.get(key)
    await STORAGES.close_loop()
    return shared


async def test_routes_naming_one_storage_share_it_on_their_loop_and_only_there() -> None:
    key = StorageKey("redis://127.0.0.1:6379/0", 0.25)
    try:
        first = STORAGES.get(key)
        assert STORAGES.get(StorageKey("redis://127.0.0.1:6379/0", 0.25)) is first
        assert STORAGES.get(StorageKey("redis://127.0.0.1:6379/1", 0.25)) is not first
        assert STORAGES.get(StorageKey("memory://")) is STORAGES.get(StorageKey("memory://"))
        elsewhere = await asyncio.to_thread(asyncio.run, _made_on_a_loop_of_its_own(key))
        assert elsewhere is not first
    finally:
        await STORAGES.close_loop()
