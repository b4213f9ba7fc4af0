"""The asyncio adapter over pybreaker's circuit breaker.

pybreaker's breaker wraps a *call*: ``call(func)`` (sync, holding a lock for the whole
call) or ``call_async`` (Tornado only). A proxy cannot hold a lock across an upstream
request, so this adapter splits a call in two: :meth:`Breaker.admit` before the upstream
call and the :class:`Ticket` it returns afterwards (``succeed``/``fail``/``release``). The
state machine stays pybreaker's: its state objects count failures and successes
(``_handle_error``/``_handle_success``), and ``open``/``half_open``/``close`` move it, on
its storage (memory, or ``CircuitRedisStorage`` shared through Redis).

What the adapter adds: at most one trial request in flight while half-open (pybreaker lets
every caller through), the failure-ratio mode over a rolling window, ``Retry-After``
arithmetic, and a local *view* of the state so the hot path seldom waits for Redis: writes
go to the Redis worker thread without being awaited, reads refresh the view once per
``sync_interval`` (awaited, with a deadline), and local memory state takes over when Redis
fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import pybreaker

from gateway_plugin_circuit_breaker.config import CircuitBreakerConfig
from gateway_plugin_circuit_breaker.machine import (
    UNREACHABLE_FAIL_MAX,
    Operation,
    Snapshot,
    State,
    half_open,
    record,
    snapshot,
    trip,
)
from gateway_plugin_circuit_breaker.shared import KEY_PREFIX, RedisLink, RedisStorage, WatchedRedis
from gateway_plugin_circuit_breaker.window import FailureWindow

logger = logging.getLogger("gateway_plugin_circuit_breaker")

TRIAL_RETRY_AFTER = 1.0
"""Seconds announced to clients refused while a half-open trial is in flight."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The breaker refused a call; a trial may go through in ``retry_after`` seconds."""

    retry_after: float

    @property
    def header(self) -> str:
        """The ``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class Ticket:
    """Permission for one call; report how it went exactly once (later reports are ignored)."""

    __slots__ = ("_breaker", "trial", "_done")

    def __init__(self, breaker: Breaker, *, trial: bool) -> None:
        self._breaker = breaker
        self.trial = trial
        """True for the single half-open trial call."""
        self._done = False

    def succeed(self) -> None:
        """The call succeeded."""
        self._finish(None)

    def fail(self, reason: str) -> None:
        """The call failed (``reason`` shows in the log when the breaker opens)."""
        self._finish(reason)

    def release(self) -> None:
        """The call neither succeeded nor failed (cancelled, or not the upstream's doing)."""
        if not self._done:
            self._done = True
            self._breaker._release(self)

    def _finish(self, failure: str | None) -> None:
        if not self._done:
            self._done = True
            self._breaker._finish(self, failure)


class Breaker:
    """One circuit breaker: pybreaker's state machine driven from asyncio.

    Safe to share between routes, and between event loops in several threads (in-process
    gateways in tests): the view is guarded by a lock that is never held across an await.
    """

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig,
        *,
        link: RedisLink | None = None,
        redis_key: str = "",
    ) -> None:
        self.name = name
        self._config = config
        self._link = link
        self._redis_key = redis_key or f"{KEY_PREFIX}:{name}"
        self._lock = threading.RLock()
        self._ratio = config.failure_ratio
        self._window = FailureWindow(config.window) if self._ratio is not None else None
        self._local_storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._local = self._pybreaker(self._local_storage)
        self._shared: pybreaker.CircuitBreaker | None = None
        self._shared_storage: RedisStorage | None = None
        # The view: what admit() decides on.
        self._state = State.CLOSED
        self._opened_at: float | None = None
        self._failures = 0
        """pybreaker's count of consecutive failures (in Redis: of every worker)."""
        self._streak = 0
        """Consecutive failures seen by this process since the last state change."""
        self._trial = False
        self._last_failure = ""
        self._on_local = link is None
        self._synced = -math.inf
        self._sync: Future[Snapshot | None] | None = None
        self._sync_deadline = 0.0
        self._next_seq = 0
        """Sequence number of the next job for the Redis worker (jobs run in order)."""
        self._confirm_at = 0
        """Snapshots of jobs numbered below this predate the view's own latest change."""

    def _pybreaker(self, storage: pybreaker.CircuitBreakerStorage) -> pybreaker.CircuitBreaker:
        fail_max = self._config.fail_max if self._ratio is None else UNREACHABLE_FAIL_MAX
        return pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=self._config.reset_timeout,
            success_threshold=self._config.success_threshold,
            state_storage=storage,
            name=self.name,
        )

    @property
    def state(self) -> State:
        """The state as this process sees it now."""
        return self._state

    @property
    def shared(self) -> bool:
        """Whether decisions use the state in Redis (False: no Redis, or Redis failing)."""
        return not self._on_local

    # -- deciding ------------------------------------------------------------------------

    async def admit(self) -> Ticket | Refusal:
        """A ticket for one call, or a refusal while the breaker is open."""
        await self._fresh()
        decision = self._decide(take=True)
        assert decision is not None
        return decision

    async def refusal(self) -> Refusal | None:
        """The refusal :meth:`admit` would give now, without taking a ticket."""
        await self._fresh()
        decision = self._decide(take=False)
        return decision if isinstance(decision, Refusal) else None

    def _decide(self, *, take: bool) -> Ticket | Refusal | None:
        with self._lock:
            state = self._state
            if state is State.CLOSED:
                return Ticket(self, trial=False) if take else None
            if state is State.OPEN and self._opened_at is not None:
                remaining = self._opened_at + self._config.reset_timeout - time.time()
                if remaining > 0:
                    return Refusal(remaining)
            if self._trial:
                return Refusal(TRIAL_RETRY_AFTER)
            if not take:
                return None
            self._trial = True
            if state is State.OPEN:
                self._expect(State.HALF_OPEN, self._opened_at)
                self._apply(half_open, ends_trial=False)
            return Ticket(self, trial=True)

    # -- recording -----------------------------------------------------------------------

    def _finish(self, ticket: Ticket, failure: str | None) -> None:
        # With Redis the result is applied on the worker thread a little later. The view
        # moves at once where this process alone knows the answer (a failed trial, the
        # N-th failure in a row here), so this worker never lets calls through meanwhile.
        with self._lock:
            if failure is not None:
                self._last_failure = failure
            if ticket.trial:
                if failure is not None and self._state is State.HALF_OPEN:
                    self._expect(State.OPEN, time.time())
                self._apply(partial(record, failure=failure, trial=True), ends_trial=True)
                return
            if self._state is not State.CLOSED:
                return  # admitted before the breaker opened: not evidence about the new state
            if self._window is not None:
                assert self._ratio is not None
                now = time.monotonic()
                self._window.add(failure is not None, now)
                if failure is not None and self._window.tripped(
                    now, ratio=self._ratio, min_calls=self._config.min_requests
                ):
                    self._expect(State.OPEN, time.time())
                    self._apply(trip, ends_trial=False)
                return
            if failure is None:
                if self._failures == 0 and self._streak == 0:
                    return  # nothing to reset: no write (with Redis, no command) per success
                self._failures = self._streak = 0
            else:
                self._streak += 1
                if self._streak >= self._config.fail_max:
                    self._expect(State.OPEN, time.time())
            self._apply(partial(record, failure=failure, trial=False), ends_trial=False)

    def _release(self, ticket: Ticket) -> None:
        if ticket.trial:
            with self._lock:
                self._trial = False

    # -- running pybreaker ---------------------------------------------------------------

    def _apply(self, operation: Operation, *, ends_trial: bool) -> None:
        """Run ``operation`` on pybreaker's breaker: in Redis (worker thread) or locally."""
        with self._lock:
            submitted = self._submit(operation)
            if submitted is not None:
                seq, future = submitted
                future.add_done_callback(partial(self._after_shared, seq, operation, ends_trial))
                return
            self._run_local(operation, ends_trial)

    def _submit(self, operation: Operation | None) -> tuple[int, Future[Snapshot | None]] | None:
        """Queue ``operation`` (None: just read) for the Redis worker; its sequence number and future."""
        if self._link is None:
            return None
        future = self._link.submit(partial(self._shared_job, operation))
        if future is None:
            return None
        seq = self._next_seq
        self._next_seq += 1
        return seq, future

    def _run_local(self, operation: Operation, ends_trial: bool) -> None:
        if not self._on_local:
            self._fall_back()
        operation(self._local)
        local = snapshot(self._local_storage)
        self._set_view(local.state, local.opened_at, local.failures)
        if ends_trial:
            self._trial = False

    def _shared_job(self, operation: Operation | None, client: WatchedRedis) -> Snapshot:
        """On the Redis worker thread: ``operation`` on the shared breaker, then its state."""
        if self._shared is None or self._shared_storage is None:
            storage = RedisStorage(pybreaker.STATE_CLOSED, client, namespace=self._redis_key)
            self._shared = self._pybreaker(storage)
            self._shared_storage = storage
        if operation is not None:
            operation(self._shared)
        return snapshot(self._shared_storage)

    def _after_shared(self, seq: int, operation: Operation, ends_trial: bool, future: Future[Snapshot | None]) -> None:
        read = future.result()
        with self._lock:
            if read is None:
                self._run_local(operation, ends_trial)  # Redis failed: record it here instead
                return
            self._on_local = False
            self._take(seq, read)
            if ends_trial:
                self._trial = False

    async def _fresh(self) -> None:
        """With Redis: refresh the view when it is older than ``sync_interval`` (awaited, bounded)."""
        link = self._link
        if link is None or time.monotonic() - self._synced < self._config.sync_interval:
            return
        with self._lock:
            future = self._sync
            if future is None:
                submitted = self._submit(None)
                if submitted is None:  # Redis resting or busy: decide on local state
                    if not self._on_local:
                        self._fall_back()
                    self._synced = time.monotonic()
                    return
                seq, future = submitted
                self._sync = future
                self._sync_deadline = time.monotonic() + link.timeout * 2
                future.add_done_callback(partial(self._after_sync, seq))
            deadline = self._sync_deadline
        # Every request waiting for this read waits until one deadline at most; shielded, so
        # a cancelled request does not cancel the read the others wait for.
        waiter = asyncio.shield(asyncio.wrap_future(future))
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await waiter
        except TimeoutError:
            pass  # Redis is slow: decide on the view we have

    def _after_sync(self, seq: int, future: Future[Snapshot | None]) -> None:
        read = future.result()
        with self._lock:
            self._sync = None
            self._synced = time.monotonic()
            if read is None:
                if not self._on_local:
                    self._fall_back()
                return
            self._on_local = False
            self._take(seq, read)

    def _fall_back(self) -> None:
        """Redis failed: carry on in local memory from the last state seen in Redis."""
        self._on_local = True
        local = self._local
        if local.current_state != self._state.value:
            if self._state is State.OPEN:
                local.open()
            elif self._state is State.HALF_OPEN:
                local.half_open()
            else:
                local.close()
        if self._opened_at is not None:
            self._local_storage.opened_at = datetime.fromtimestamp(self._opened_at, UTC)

    # -- the view ------------------------------------------------------------------------

    def _take(self, seq: int, snapshot: Snapshot) -> None:
        """Adopt a snapshot, unless it was read before the operation that confirms the view."""
        if seq >= self._confirm_at:
            self._set_view(snapshot.state, snapshot.opened_at, snapshot.failures)

    def _expect(self, state: State, opened_at: float | None) -> None:
        """Move the view ahead of storage; the next operation submitted will confirm it.

        Jobs run in order, so snapshots read by earlier jobs are stale until then.
        """
        self._set_view(state, opened_at, self._failures)
        self._confirm_at = self._next_seq

    def _set_view(self, state: State, opened_at: float | None, failures: int) -> None:
        previous = self._state
        self._state, self._opened_at, self._failures = state, opened_at, failures
        if state is previous:
            return
        self._streak = 0
        if self._window is not None:
            self._window.clear()
        if state is State.OPEN:
            logger.warning(
                "circuit breaker %s opened (last failure: %s); refusing calls for %gs",
                self.name,
                self._last_failure or "elsewhere",
                self._config.reset_timeout,
                extra={"breaker": self.name, "breaker_state": state.value},
            )
        else:
            logger.info(
                "circuit breaker %s is %s",
                self.name,
                state.value,
                extra={"breaker": self.name, "breaker_state": state.value},
            )
