"""bcrypt checks off the event loop, on a few threads every basic-auth route of a process shares.

bcrypt is slow on purpose (tens of milliseconds at the usual costs), so it must never run on
the event loop. A dedicated pool, rather than the loop's default executor, keeps a flood of
wrong passwords from starving other users of that executor (DNS lookups, for one), and its
bound on waiting checks turns such a flood into quick 503s instead of an ever-growing queue.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

logger = logging.getLogger("gateway_plugin_basic_auth")

BCRYPT_MAX_PASSWORD = 72
"""bcrypt reads at most this many bytes of a password; longer ones are refused, not truncated."""

T = TypeVar("T")


class Verdict(enum.Enum):
    """The result of one password check."""

    MATCH = "match"
    MISMATCH = "mismatch"
    BUSY = "busy"
    """Too many checks were already waiting: none was made."""


class BcryptPool:
    """A small thread pool for bcrypt, made on first use (and anew in a forked worker)."""

    def __init__(self, *, workers: int | None = None, max_pending: int = 128) -> None:
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self.runs = 0
        """bcrypt computations started so far (checks and decoys)."""

    async def check(self, password: bytes, hashed: bytes) -> Verdict:
        """Whether ``password`` matches the bcrypt ``hashed``, computed on the pool."""
        if len(password) > BCRYPT_MAX_PASSWORD:
            return Verdict.MISMATCH
        try:
            matched = await self._run(bcrypt.checkpw, password, hashed)
        except ValueError:  # a hash bcrypt refuses; the htpasswd parser should have caught it
            logger.warning("bcrypt refused a stored hash; the password check fails")
            return Verdict.MISMATCH
        if matched is None:
            return Verdict.BUSY
        return Verdict.MATCH if matched else Verdict.MISMATCH

    async def waste(self, password: bytes, salt: bytes) -> Verdict:
        """Spend what a check costs, then fail: an unknown user must take as long as a known one."""
        if len(password) > BCRYPT_MAX_PASSWORD:
            return Verdict.MISMATCH
        done = await self._run(bcrypt.hashpw, password, salt)
        return Verdict.BUSY if done is None else Verdict.MISMATCH

    async def _run(self, function: Callable[[bytes, bytes], T], password: bytes, other: bytes) -> T | None:
        """``function(password, other)`` on the pool; None when every slot is taken.

        A slot is held until the thread is done with the work (not until the caller stops
        waiting), so the bound counts real work even when clients hang up.
        """
        if not self._slots.acquire(blocking=False):
            return None
        try:
            future = self._pool().submit(function, password, other)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self.runs += 1
        return await asyncio.wrap_future(future)

    def _pool(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        with self._lock:
            if self._executor is None or self._pid != pid:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="basic-auth-bcrypt")
                self._pid = pid
            return self._executor

    def shutdown(self) -> None:
        """Stop the threads once queued checks are done (tests; a process exit does it anyway)."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
