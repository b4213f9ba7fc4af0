"""Keys from a JWKS URL: fetched with httpx, cached with a TTL, refreshed at a bounded rate.

The URL comes from the config only; a ``jku``, ``x5u`` or ``jwk`` header inside a token is
never followed. At most one fetch runs at a time (others wait for it), and fetches start at
least ``min_refresh_interval`` apart, whatever the reason: a flood of tokens naming random
``kid`` values costs the issuer one request per interval. A failed fetch keeps the keys
already held; with none held, callers see ``None`` and answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import httpx

from gateway_plugin_jwt_auth.keys import KeyMaterialError, KeySet, keys_from_jwks

logger = logging.getLogger("gateway_plugin_jwt_auth")

MAX_JWKS_BYTES = 1024 * 1024
"""A larger JWKS document is refused (real ones are a few KiB)."""


class JwksFetchError(Exception):
    """The JWKS URL did not give a usable document (status, size, transport)."""


class RemoteKeys:
    """The key set behind one JWKS URL, for one plugin object (one per route and worker)."""

    def __init__(
        self,
        url: str,
        algorithms: tuple[str, ...],
        *,
        ttl: float,
        min_refresh_interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._algorithms = algorithms
        self._ttl = ttl
        self._min_interval = min_refresh_interval
        self._timeout = timeout
        self._clock = clock
        self.keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._task: asyncio.Task[None] | None = None

    async def current(self) -> KeySet | None:
        """The keys to verify with now.

        With none yet, waits for a fetch (if one may start). With stale keys, starts a
        background refresh and answers with the keys held.
        """
        if self.keys is None:
            await self._refresh()
        elif self._clock() - self._fetched_at >= self._ttl:
            self._start()
        return self.keys

    async def refresh_for_unknown_kid(self) -> KeySet | None:
        """A token named a ``kid`` we do not hold: fetch again if the interval allows, and wait."""
        await self._refresh()
        return self.keys

    async def _refresh(self) -> None:
        task = self._start()
        if task is not None:
            await asyncio.shield(task)  # a client going away must not cancel the fetch others wait for

    def _start(self) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one if the interval allows, or None."""
        if self._task is not None:
            return self._task
        now = self._clock()
        if now - self._attempted_at < self._min_interval:
            return None
        self._attempted_at = now
        task = asyncio.get_running_loop().create_task(self._fetch(), name=f"jwt-auth JWKS {self.url}")
        self._task = task
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._download()
            keys, skipped = keys_from_jwks(body, self._algorithms)
        except (httpx.HTTPError, JwksFetchError, KeyMaterialError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            self._report_failure(reason)
            return
        except Exception:  # never let a fetch failure become a 500 for the requests waiting on it
            logger.exception("jwt-auth: fetching the JWKS at %s failed unexpectedly", self.url)
            return
        if skipped:
            logger.info("jwt-auth: JWKS at %s: skipped %s", self.url, "; ".join(skipped))
        self.keys = keys
        self._fetched_at = self._clock()

    async def _download(self) -> bytes:
        async with (
            httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise JwksFetchError(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise JwksFetchError(f"the document is larger than {MAX_JWKS_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksFetchError(f"the document is larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)

    def _report_failure(self, reason: str) -> None:
        if self.keys is None:
            logger.warning(
                "jwt-auth: fetching the JWKS at %s failed (%s); no keys yet, so its routes answer 503; next try in %gs",
                self.url,
                reason,
                self._min_interval,
            )
        else:
            logger.warning(
                "jwt-auth: fetching the JWKS at %s failed (%s); still verifying with the %d keys fetched before",
                self.url,
                reason,
                len(self.keys),
            )
