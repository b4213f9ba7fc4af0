"""A reflector: keeps one kind in one namespace (or the whole cluster) mirrored in the store.

It lists, then watches from the list's ``resourceVersion`` with bookmarks, and never ends
until stopped:

- ``ADDED`` and ``MODIFIED`` upsert, ``DELETED`` removes, ``BOOKMARK`` only moves the
  ``resourceVersion`` on. Every event's object carries the newest version seen.
- A watch the server ends (its ``timeoutSeconds``) or that reads nothing for the
  client-side read timeout is re-opened from the last ``resourceVersion``, at once (unless
  it ended within a second without a single event: that counts as a failure).
- ``410 Gone`` (as an HTTP status or an ``ERROR`` event) means that version is no longer
  kept: list again, at once.
- Any other failure (HTTP error, connection refused or cut, an ``ERROR`` event) waits a
  capped exponential backoff with jitter, then lists again and *replaces* this scope of the
  store, so an object deleted while the watch was down does not linger. (client-go's
  reflector relists after a watch error the same way.)

The official client's ``SharedInformer`` (v37) stops short of this: it hands out
deserialised models, retries at a fixed 5 s, sets no client-side timeout and asks for no
bookmarks. So this loop is ours; the HTTP calls behind :class:`ListWatch` are the client's.

It runs in a thread of its own, because the client is synchronous: a blocked read must
never hold the event loop. It reports through callbacks the owner makes thread-safe. It
knows no ``kubernetes`` type: :mod:`.client` translates the client's errors into
:class:`WatchExpired` and :class:`ApiUnavailable`, and unit tests drive it with a fake.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("gateway_core.providers.kubernetes")

HEALTHY_WATCH_SECONDS = 10.0
"""A watch that stayed up this long resets the backoff when it fails."""
SHORT_WATCH_SECONDS = 1.0
"""A watch the server ends this soon without any event counts as a failure (client-go's
"very short watch"): backoff, then a list."""


class WatchExpired(Exception):
    """410 Gone: the ``resourceVersion`` (or a list's continue token) is too old; list again."""


class ApiUnavailable(Exception):
    """Any other failure talking to the API server; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list: its items (raw dicts), the list's version and continue token."""

    items: Sequence[dict[str, Any]]
    resource_version: str
    continue_token: str | None = None


class WatchStream(Protocol):
    """An open watch: iterate its events (raw dicts); ``abort`` may be called from any thread."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class ListWatch(Protocol):
    """List and watch calls for one kind in one scope. Raise :class:`WatchExpired` on 410 and
    :class:`ApiUnavailable` on any other failure."""

    description: str
    """For logs: ``Ingress in namespace default`` or ``Ingress in all namespaces``."""

    def list_page(self, continue_token: str | None) -> ListPage: ...

    def watch(self, resource_version: str) -> WatchStream: ...


class StoreScope(Protocol):
    """The part of the store one reflector owns. Each method says whether anything changed."""

    def replace(self, items: Sequence[Mapping[str, Any]]) -> bool: ...

    def upsert(self, item: Mapping[str, Any]) -> bool: ...

    def delete(self, item: Mapping[str, Any]) -> bool: ...


class Backoff:
    """Capped exponential backoff with jitter: ``base * 2**n`` up to ``cap``, each delay
    drawn between half and all of it (so replicas that failed together spread out)."""

    def __init__(self, *, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this failure)."""
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 32))
        self.failures += 1
        return float(ceiling * (0.5 + self.rng() / 2))

    def reset(self) -> None:
        self.failures = 0


class Reflector:
    """List-then-watch one kind in one scope into a :class:`StoreScope`, until stopped."""

    def __init__(
        self,
        list_watch: ListWatch,
        scope: StoreScope,
        *,
        on_change: Callable[[], None],
        on_listed: Callable[[Reflector], None],
        backoff: Backoff,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.list_watch = list_watch
        self.scope = scope
        self.on_change = on_change
        self.on_listed = on_listed
        self.backoff = backoff
        self.clock = clock
        self.resource_version: str | None = None
        """The version the next watch starts from; None means list first."""
        self.lists_started = 0
        self.lists_completed = 0
        """The number (in ``lists_started``) of the last list that reached the store."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._relist_requested = False
        self._stream: WatchStream | None = None
        self._failing = False
        self._expired_streak = 0
        self._thread: threading.Thread | None = None

    @property
    def synced(self) -> bool:
        """True once the first list is in the store."""
        return self.lists_completed > 0

    def start(self) -> None:
        """Run in a daemon thread (a blocked read never delays process exit)."""
        self._thread = threading.Thread(target=self.run, name=f"reflector {self.list_watch.description}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and cut its open watch (safe from any thread)."""
        self._stop.set()
        self._abort_stream()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def request_relist(self) -> None:
        """List again now (the store's filter widened): cuts the open watch."""
        with self._lock:
            self._relist_requested = True
        self._abort_stream()

    def run(self) -> None:
        """The loop: list, watch, recover; returns only after :meth:`stop`."""
        while not self._stop.is_set():
            try:
                if self.resource_version is None or self._take_relist_request():
                    self._list()
                self._watch()
            except WatchExpired as exc:
                logger.info("%s: %s; listing again", self.list_watch.description, exc or "410 Gone")
                self.resource_version = None
                self._expired_streak += 1
                if self._expired_streak > 1:  # 410 again without progress: do not spin
                    self._stop.wait(self.backoff.next_delay())
            except ApiUnavailable as exc:
                if self._stop.is_set():
                    return
                if self._take_relist_request():  # our own abort, not the server's failure
                    self.resource_version = None
                    continue
                self._fail(exc)
            except Exception as exc:  # a bug or a surprise from the client: never stop watching
                if self._stop.is_set():
                    return
                logger.exception("%s: unexpected error", self.list_watch.description)
                self._fail(exc)

    def _take_relist_request(self) -> bool:
        with self._lock:
            requested, self._relist_requested = self._relist_requested, False
        return requested

    def _fail(self, exc: BaseException) -> None:
        delay = self.backoff.next_delay()
        # Warn when it starts failing, then every tenth attempt (a 403 must not go unseen).
        log = logger.warning if not self._failing or self.backoff.failures % 10 == 0 else logger.debug
        log("%s: %s; retrying in %.1fs", self.list_watch.description, exc or type(exc).__name__, delay)
        self._failing = True
        self.resource_version = None  # the gap may hide deletions: list and replace
        self._stop.wait(delay)

    def _list(self) -> None:
        self.lists_started += 1
        number = self.lists_started
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.list_watch.list_page(token)
            items.extend(page.items)
            token = page.continue_token
            if not token:
                break
        changed = self.scope.replace(items)
        self.resource_version = page.resource_version
        self.lists_completed = number
        if self._failing:
            logger.info("%s: listed again (%d objects)", self.list_watch.description, len(items))
            self._failing = False
        self.on_listed(self)
        if changed:
            self.on_change()

    def _watch(self) -> None:
        assert self.resource_version is not None
        stream = self.list_watch.watch(self.resource_version)
        with self._lock:
            if self._relist_requested or self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        started = self.clock()
        events = 0
        try:
            for event in stream:
                if self._stop.is_set():
                    return
                self._apply(event)
                events += 1
                self._expired_streak = 0
            if not events and self.clock() - started < SHORT_WATCH_SECONDS and not self._stop.is_set():
                # A server (or a proxy) that ends every watch at once would be hammered.
                raise ApiUnavailable("the server ended the watch at once, with no event")
            self._expired_streak = 0  # a clean end is progress too
        finally:
            with self._lock:
                self._stream = None
            stream.close()
            if self.clock() - started >= HEALTHY_WATCH_SECONDS:
                self.backoff.reset()

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            logger.warning("%s: ignoring a watch event without an object", self.list_watch.description)
            return
        if kind == "ERROR":
            code = obj.get("code")
            message = f"watch error {code} {obj.get('reason') or ''}: {obj.get('message') or ''}".strip()
            if code == 410:
                raise WatchExpired(message)
            raise ApiUnavailable(message, status=code if isinstance(code, int) else None)
        metadata = obj.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        changed = False
        if kind in ("ADDED", "MODIFIED"):
            changed = self.scope.upsert(obj)
        elif kind == "DELETED":
            changed = self.scope.delete(obj)
        elif kind != "BOOKMARK":
            logger.warning("%s: ignoring a watch event of type %r", self.list_watch.description, kind)
            return
        if isinstance(version, str) and version:
            self.resource_version = version
        if changed:
            self.on_change()

    def _abort_stream(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.abort()
