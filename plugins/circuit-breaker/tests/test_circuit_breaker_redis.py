"""Breaker state shared through a real redis-server, and what happens when Redis fails."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from gateway_plugin_circuit_breaker import Breaker, CircuitBreakerConfig, Refusal, State, Ticket
from gateway_plugin_circuit_breaker.shared import RedisLink

from gateway_core.testing import RedisServer, free_port, wait_until


def _state(breaker: Breaker) -> State:
    """The state, read through a call (mypy would narrow a re-read property)."""
    return breaker.state


@pytest.fixture
def links() -> Iterator[list[RedisLink]]:
    made: list[RedisLink] = []
    yield made
    for link in made:
        link.close()


def _pair(url: str, links: list[RedisLink], **config: Any) -> tuple[Breaker, Breaker]:
    """Two breakers on one Redis key, each with its own link: two workers, as far as Redis knows."""
    settings = CircuitBreakerConfig.model_validate({"redis": url, "sync_interval": 0.05, **config})
    key = f"test:{uuid.uuid4().hex}"
    pair = []
    for _ in range(2):
        link = RedisLink(url, timeout=0.5, retry_after=0.3)
        links.append(link)
        pair.append(Breaker("test/api", settings, link=link, redis_key=key))
    return pair[0], pair[1]


async def _ticket(breaker: Breaker) -> Ticket:
    admission = await breaker.admit()
    assert isinstance(admission, Ticket), f"expected a ticket, got {admission}"
    return admission


async def _until(predicate: Any) -> None:
    deadline = time.monotonic() + 5.0
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_breaker_opened_by_one_worker_refuses_in_the_other(
    redis_server: RedisServer, links: list[RedisLink]
) -> None:
    first, second = _pair(redis_server.url, links, fail_max=2, reset_timeout=30)
    for _ in range(2):
        (await _ticket(first)).fail("status 500")
    assert isinstance(await first.admit(), Refusal)  # at once here, before Redis has it
    key = f"{first._redis_key}:pybreaker:state"
    wait_until(lambda: redis_server.command("GET", key) == b"$4\r\nopen\r\n", message="the state in Redis")
    refusal = await second.admit()  # its view is older than sync_interval: it reads Redis first
    assert isinstance(refusal, Refusal)
    assert 28 <= refusal.retry_after <= 30  # Redis keeps opened_at in whole seconds
    assert _state(second) is State.OPEN
    assert second.shared


async def test_failures_from_both_workers_add_up(redis_server: RedisServer, links: list[RedisLink]) -> None:
    first, second = _pair(redis_server.url, links, fail_max=3, reset_timeout=30)
    (await _ticket(first)).fail("status 500")
    await _until(lambda: _is(first, failures=1))
    (await _ticket(second)).fail("status 500")
    await _until(lambda: _is(second, failures=2))
    (await _ticket(first)).fail("status 500")

    async def both_open() -> bool:
        return isinstance(await first.refusal(), Refusal) and isinstance(await second.refusal(), Refusal)

    await _until(both_open)


async def _is(breaker: Breaker, *, failures: int) -> bool:
    await breaker.refusal()
    return breaker._failures == failures


async def test_a_trial_success_in_one_worker_closes_it_for_both(
    redis_server: RedisServer, links: list[RedisLink]
) -> None:
    first, second = _pair(redis_server.url, links, fail_max=1, reset_timeout=0.2)
    (await _ticket(first)).fail("status 500")

    async def trial_possible() -> bool:
        return await first.refusal() is None and _state(first) is State.OPEN

    await _until(trial_possible)
    trial = await _ticket(first)
    assert trial.trial
    trial.succeed()

    async def second_closed() -> bool:
        return await second.refusal() is None and _state(second) is State.CLOSED

    await _until(second_closed)


async def test_redis_going_away_falls_back_to_local_state_and_says_so(
    redis_server: RedisServer, links: list[RedisLink], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_plugin_circuit_breaker")
    first, _ = _pair(redis_server.url, links, fail_max=2, reset_timeout=30)
    (await _ticket(first)).succeed()
    await _until(lambda: _shared(first))
    redis_server.stop()
    for _ in range(2):
        (await _ticket(first)).fail("upstream_connect_failed")

    async def local_open() -> bool:
        return isinstance(await first.refusal(), Refusal) and not first.shared

    await _until(local_open)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("Redis at redis://127.0.0.1" in message and "local memory" in message for message in warnings)
    assert not any(record.exc_info for record in caplog.records if record.name.endswith(".redis"))


async def test_without_redis_from_the_start_it_works_locally(links: list[RedisLink]) -> None:
    first, _ = _pair(f"redis://127.0.0.1:{free_port()}/0", links, fail_max=2, reset_timeout=30)
    assert isinstance(await first.admit(), Ticket)
    assert not first.shared
    for _ in range(2):
        (await _ticket(first)).fail("status 500")
    assert isinstance(await first.admit(), Refusal)


async def test_redis_coming_back_shares_state_again(links: list[RedisLink], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway_plugin_circuit_breaker")
    port = free_port()
    first, second = _pair(f"redis://127.0.0.1:{port}/0", links, fail_max=1, reset_timeout=30)
    assert isinstance(await first.admit(), Ticket)
    assert not first.shared
    with RedisServer(port=port):
        await _until(lambda: _shared(first))
        (await _ticket(first)).fail("status 500")

        async def second_open() -> bool:
            return isinstance(await second.refusal(), Refusal)

        await _until(second_open)
    assert any("reachable again" in record.getMessage() for record in caplog.records)


async def _shared(breaker: Breaker) -> bool:
    await breaker.refusal()
    return breaker.shared


async def test_this_worker_acts_at_once_while_its_redis_writes_are_queued(
    redis_server: RedisServer, links: list[RedisLink]
) -> None:
    first, _ = _pair(redis_server.url, links, fail_max=2, reset_timeout=0.2)
    assert isinstance(await first.admit(), Ticket)
    hold = threading.Event()
    link = links[0]
    assert link.submit(lambda client: hold.wait(5)) is not None  # the worker thread is busy now
    try:
        for _ in range(2):
            (await _ticket(first)).fail("status 500")
        assert isinstance(await first.admit(), Refusal)  # opened here before Redis heard of it
    finally:
        hold.set()

    async def due() -> bool:
        return await first.refusal() is None

    await _until(due)
    trial = await _ticket(first)
    hold.clear()
    assert link.submit(lambda client: hold.wait(5)) is not None
    try:
        trial.fail("status 500")
        refusal = await first.admit()
        assert isinstance(refusal, Refusal)  # open again at once, not waiting for Redis
        assert 0.1 < refusal.retry_after <= 0.2  # a fresh open period, not "a trial is in flight"
    finally:
        hold.set()


async def test_a_snapshot_read_before_this_workers_own_change_does_not_undo_it(
    redis_server: RedisServer, links: list[RedisLink]
) -> None:
    first, _ = _pair(redis_server.url, links, fail_max=2, reset_timeout=30)
    assert isinstance(await first.admit(), Ticket)
    link = links[0]
    before, between = threading.Event(), threading.Event()
    try:
        link.submit(lambda client: before.wait(5))
        (await _ticket(first)).fail("status 500")  # its job will read "closed, 1 failure"
        link.submit(lambda client: between.wait(5))
        (await _ticket(first)).fail("status 500")  # opens here; its job is queued last
        before.set()
        wait_until(lambda: link._pending == 2, message="the first failure's job to finish")
        assert isinstance(await first.admit(), Refusal)
    finally:
        before.set()
        between.set()
