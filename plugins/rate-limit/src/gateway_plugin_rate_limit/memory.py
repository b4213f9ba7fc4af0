"""An in-memory ``limits`` storage for one event loop: no locks, no background task, bounded.

``limits.aio.storage.MemoryStorage`` starts an expiry task after every call that finds the
previous one finished, and that task scans every key. On a serving event loop that is a
full scan per loop iteration: measured on the development machine, 17 µs per request with
one client and 0.7 ms per request with 10,000 clients, against 2.4 µs when no task runs
(its moving window also moves each expiry check to a thread). The synchronous
``limits.storage.MemoryStorage`` instead scans from a new thread every 10 ms, under the GIL.

This storage keeps the same data model but does the bookkeeping inline: every call runs on
the loop's thread between two awaits, so no lock is needed; expired keys are dropped through
a heap ordered by expiry time, a constant-time check per call; and the number of counters
plus moving-window entries is capped at :data:`MAX_ENTRIES`, past which new counts raise
:class:`StorageFullError` (the plugin decides those requests by ``on_storage_error``). The
``limits`` strategies run over it unchanged: window arithmetic and key names stay theirs.
It must only be used from the event loop that made it.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from math import floor

from limits.aio.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage
from limits.storage.base import TimestampedSlidingWindow

MAX_ENTRIES = 1_000_000
"""Counters plus moving-window timestamps one storage holds at most (a few hundred MB)."""


class StorageFullError(Exception):
    """The memory storage holds :data:`MAX_ENTRIES` live entries and cannot count a new one."""


class LoopMemoryStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """Fixed-window counters, sliding-window counters and moving-window timestamps in memory."""

    STORAGE_SCHEME = None  # made directly, never from a URL

    def __init__(self, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.max_entries = max_entries
        self._clock = clock
        self._counters: dict[str, list[float]] = {}
        """key -> [count, expires at]."""
        self._events: dict[str, tuple[deque[float], int]] = {}
        """key -> (request times, newest first; the window length)."""
        self._expiring: list[tuple[float, str]] = []
        """(when to look again, key): a heap over both dicts."""
        self._entries = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return StorageFullError

    # --- housekeeping ---------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        """Drop what has expired by ``now`` (amortised: each key is looked at when it may expire)."""
        heap = self._expiring
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            counter = self._counters.get(key)
            if counter is not None and counter[1] <= now:
                del self._counters[key]
                self._entries -= 1
            found = self._events.get(key)
            if found is not None:
                events, expiry = found
                self._trim(events, now - expiry)
                if events:
                    heapq.heappush(heap, (events[0] + expiry, key))
                else:
                    del self._events[key]

    def _trim(self, events: deque[float], cutoff: float) -> None:
        while events and events[-1] <= cutoff:
            events.pop()
            self._entries -= 1

    def _room(self, needed: int) -> None:
        if self._entries + needed > self.max_entries:
            raise StorageFullError(f"the memory storage holds {self._entries} entries, its limit")

    def __len__(self) -> int:
        """Live counters plus moving-window timestamps."""
        return self._entries

    # --- counters (fixed window; the two windows of the sliding window counter) ------------

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = self._clock()
        if self._expiring and self._expiring[0][0] <= now:
            self._expire(now)
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            if counter is None:
                self._room(1)
                self._entries += 1
            expires = now + expiry
            self._counters[key] = [amount, expires]
            heapq.heappush(self._expiring, (expires, key))
            return amount
        counter[0] += amount
        return int(counter[0])

    async def get(self, key: str) -> int:
        counter = self._counters.get(key)
        if counter is None or counter[1] <= self._clock():
            return 0
        return int(counter[0])

    async def get_expiry(self, key: str) -> float:
        now = self._clock()
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            return now
        return counter[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = self._entries
        self._counters.clear()
        self._events.clear()
        self._expiring.clear()
        self._entries = 0
        return count

    async def clear(self, key: str) -> None:
        if self._counters.pop(key, None) is not None:
            self._entries -= 1
        found = self._events.pop(key, None)
        if found is not None:
            self._entries -= len(found[0])

    # --- moving window ---------------------------------------------------------------------

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = self._clock()
        if self._expiring and self._expiring[0][0] <= now:
            self._expire(now)
        found = self._events.get(key)
        if found is None:
            events: deque[float] = deque()
        else:
            events = found[0]
            self._trim(events, now - expiry)
        if len(events) + amount > limit:
            return False
        self._room(amount)
        if found is None:
            self._events[key] = (events, expiry)
            heapq.heappush(self._expiring, (now + expiry, key))
        events.extendleft([now] * amount)
        self._entries += amount
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self._clock()
        found = self._events.get(key)
        if found is None:
            return now, 0
        events = found[0]
        self._trim(events, now - expiry)
        if not events:
            return now, 0
        return events[-1], len(events)

    # --- sliding window counter ------------------------------------------------------------

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = self._clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous_count, previous_ttl, current_count, _ = self._sliding_window(previous_key, current_key, expiry, now)
        if floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
            return False
        # incr() never suspends: nothing else runs between the check and the increment.
        await self.incr(current_key, 2 * expiry, amount)
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        now = self._clock()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        return self._sliding_window(previous_key, current_key, expiry, now)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        previous_key, current_key = self.sliding_window_keys(key, expiry, self._clock())
        await self.clear(previous_key)
        await self.clear(current_key)

    def _sliding_window(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        """(previous count, its weight window in seconds, current count, current TTL), as ``limits`` has it."""
        previous = self._counters.get(previous_key)
        current = self._counters.get(current_key)
        previous_count = int(previous[0]) if previous is not None and previous[1] > now else 0
        current_count = int(current[0]) if current is not None and current[1] > now else 0
        previous_ttl = 0.0 if previous_count == 0 else (1 - (((now - expiry) / expiry) % 1)) * expiry
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return previous_count, previous_ttl, current_count, current_ttl
