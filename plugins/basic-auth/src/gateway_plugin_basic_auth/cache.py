"""Recently verified credentials, so a steady client pays for bcrypt once per TTL, not per request.

Only successes go in: a wrong guess is checked in full every time, so the cache never makes
guessing cheaper. Entries are keyed by an HMAC of the credentials under a key made per
cache, so the memory holds no password nor a digest that could be attacked offline.
Bounded in size (least recently used dropped first) and in time (an entry expires
``ttl`` seconds after the check that made it, however often it is used).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict


class VerifiedCache:
    """(user, password) pairs whose bcrypt check succeeded lately; loop-thread only."""

    __slots__ = ("_entries", "_key", "_size", "_ttl")

    def __init__(self, *, ttl: float, size: int) -> None:
        self._ttl = ttl
        self._size = size
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def key(self, credentials: bytes) -> bytes:
        """The cache key of the decoded ``user:password`` (unambiguous: a user name has no colon)."""
        return hmac.digest(self._key, credentials, hashlib.sha256)

    def hit(self, key: bytes) -> bool:
        """Whether ``key`` was verified less than ``ttl`` seconds ago (an expired entry is dropped)."""
        expires = self._entries.get(key)
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self._entries[key]
            return False
        self._entries.move_to_end(key)
        return True

    def add(self, key: bytes) -> None:
        """Remember a successful check for ``ttl`` seconds from now."""
        if self._ttl <= 0:
            return
        self._entries[key] = time.monotonic() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
