"""A rolling window of call outcomes, for the failure-ratio mode.

pybreaker only counts consecutive failures. The ratio mode counts calls and failures over
the last ``window`` seconds in a fixed ring of buckets (memory does not grow with traffic),
and the breaker opens pybreaker's circuit itself when the ratio is reached.
"""

from __future__ import annotations

import math


class FailureWindow:
    """Calls and failures over the last ``seconds``, in ``buckets`` time slices.

    Times are ``time.monotonic()`` values passed in by the caller. Counts age out a slice
    at a time, so the window covers between ``seconds - seconds/buckets`` and ``seconds``.
    """

    __slots__ = ("_width", "_calls", "_failures", "_slice")

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        self._width = seconds / buckets
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._slice = [-1] * buckets
        """The absolute slice number each bucket holds now (-1: none)."""

    def add(self, failed: bool, now: float) -> None:
        """Count one call that ended at ``now``."""
        number = math.floor(now / self._width)
        index = number % len(self._calls)
        if self._slice[index] != number:
            self._slice[index] = number
            self._calls[index] = 0
            self._failures[index] = 0
        self._calls[index] += 1
        if failed:
            self._failures[index] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """``(calls, failures)`` in the window ending at ``now``."""
        oldest = math.floor(now / self._width) - len(self._calls) + 1
        calls = failures = 0
        for index, number in enumerate(self._slice):
            if number >= oldest:
                calls += self._calls[index]
                failures += self._failures[index]
        return calls, failures

    def tripped(self, now: float, *, ratio: float, min_calls: int) -> bool:
        """Whether the window holds at least ``min_calls`` calls and ``ratio`` of them failed."""
        calls, failures = self.counts(now)
        # failures / calls, not failures >= ratio * calls: 3 of 10 must meet a ratio of 0.3.
        return calls >= min_calls and failures / calls >= ratio

    def clear(self) -> None:
        """Forget every call (the breaker changed state)."""
        for index in range(len(self._calls)):
            self._calls[index] = self._failures[index] = 0
            self._slice[index] = -1
