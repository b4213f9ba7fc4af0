"""A small time-limited LRU cache of what the auth service granted.

Bounded by entry count; keys are SHA-256 digests, so the credentials a key was made from
are not kept in memory. Used from one event loop at a time (no locking needed: no await
between a lookup and its update).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Values kept for ``ttl`` seconds; past ``max_entries``, the least recently used goes."""

    __slots__ = ("_ttl", "_max", "_clock", "_items")

    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[bytes, tuple[float, T]] = OrderedDict()

    def get(self, key: bytes) -> T | None:
        """The value stored under ``key`` if it has not expired."""
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: T) -> None:
        """Store ``value`` for ``ttl`` seconds from now."""
        self._items[key] = (self._clock() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
