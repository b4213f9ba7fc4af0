"""The reflector's list/watch logic, against a scripted API server.

kmock cannot exercise this: its objects have no real ``resourceVersion`` history, its watch
replays every object whatever version is asked for, and it never sends ``410 Gone`` or a
BOOKMARK on its own. So the API server is scripted here (the only stand-in in these tests:
it replaces the Kubernetes API, not our code); the store is the real one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gateway_core.manifests import Service
from gateway_core.providers.kubernetes.reflector import (
    HEALTHY_WATCH_SECONDS,
    ApiUnavailable,
    Backoff,
    ListPage,
    Reflector,
    WatchExpired,
)
from gateway_core.providers.kubernetes.store import ObjectStore
from gateway_core.testing import service, wait_until

Event = dict[str, Any]


def svc(name: str, version: str, port: int = 80) -> dict[str, Any]:
    obj = service(name, port=port, namespace="default")
    obj["metadata"]["resourceVersion"] = version
    return obj


def event(kind: str, obj: dict[str, Any]) -> Event:
    return {"type": kind, "object": obj}


def bookmark(version: str) -> Event:
    return {
        "type": "BOOKMARK",
        "object": {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": version}},
    }


def error(code: int) -> Event:
    return {"type": "ERROR", "object": {"kind": "Status", "code": code, "reason": "X", "message": f"code {code}"}}


class Stream:
    """A scripted watch response: events, then an exception or a clean end (or a block)."""

    def __init__(self, events: list[Event], *, then: Exception | None = None, block: bool = False) -> None:
        self.events = events
        self.then = then
        self.block = block
        self.aborted = threading.Event()
        self.closed = False

    def __iter__(self) -> Iterator[Event]:
        yield from self.events
        if self.block:
            self.aborted.wait(10)
            raise ApiUnavailable("connection aborted")
        if self.then is not None:
            raise self.then

    def abort(self) -> None:
        self.aborted.set()

    def close(self) -> None:
        self.closed = True


class ScriptedApi:
    """Answers list and watch calls from scripts; stops the reflector when a script runs out."""

    description = "Service in all namespaces"

    def __init__(self, lists: list[ListPage | Exception], watches: list[Stream | Exception]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, str | None]] = []
        self.reflector: Reflector | None = None

    def list_page(self, continue_token: str | None) -> ListPage:
        self.calls.append(("list", continue_token))
        if not self.lists:
            return self._exhausted_list()
        item = self.lists.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def watch(self, resource_version: str) -> Stream:
        self.calls.append(("watch", resource_version))
        if not self.watches:
            assert self.reflector is not None
            self.reflector.stop()
            return Stream([])
        item = self.watches.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def _exhausted_list(self) -> ListPage:
        assert self.reflector is not None
        self.reflector.stop()
        raise ApiUnavailable("script exhausted")


class Recorder:
    def __init__(self) -> None:
        self.changes = 0
        self.lists = 0

    def changed(self) -> None:
        self.changes += 1

    def listed(self, reflector: Reflector) -> None:
        self.lists += 1


def make(
    api: ScriptedApi, *, backoff: Backoff | None = None, clock: Any = None
) -> tuple[Reflector, ObjectStore, Recorder]:
    store = ObjectStore()
    recorder = Recorder()
    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    reflector = Reflector(
        api,
        store.scope("Service", "v1", None),
        on_change=recorder.changed,
        on_listed=recorder.listed,
        backoff=backoff or Backoff(base=0.001, cap=0.004),
        **options,
    )
    api.reflector = reflector
    return reflector, store, recorder


def names(store: ObjectStore) -> list[str]:
    return [obj.name for obj in store.snapshot().objects if isinstance(obj, Service)]


def test_lists_then_watches_from_the_lists_version_and_follows_events_and_bookmarks() -> None:
    api = ScriptedApi(
        lists=[ListPage([svc("a", "1")], "10")],
        watches=[
            Stream([event("ADDED", svc("b", "11")), event("MODIFIED", svc("a", "12", port=81)), bookmark("15")]),
            Stream([event("DELETED", svc("b", "16"))]),
        ],
    )
    reflector, store, recorder = make(api)
    reflector.run()
    # The server ended each watch cleanly: it is re-opened from the newest version seen,
    # a BOOKMARK's included, without listing again.
    assert api.calls == [("list", None), ("watch", "10"), ("watch", "15"), ("watch", "16")]
    assert names(store) == ["a"]
    ports = [port.port for obj in store.snapshot().objects if isinstance(obj, Service) for port in obj.spec.ports]
    assert ports == [81]
    assert recorder.lists == 1
    assert recorder.changes == 4  # the list, ADDED, MODIFIED, DELETED (not the BOOKMARK)
    assert reflector.backoff.failures == 0


def test_gone_as_an_error_event_or_an_http_status_lists_again_at_once() -> None:
    api = ScriptedApi(
        lists=[ListPage([svc("a", "1")], "10"), ListPage([svc("a", "1")], "20"), ListPage([svc("a", "1")], "30")],
        watches=[
            Stream([bookmark("11"), error(410)]),
            Stream([bookmark("21")]),
            WatchExpired("410 Gone"),
            Stream([bookmark("31")]),
        ],
    )
    reflector, _, recorder = make(api, backoff=Backoff(base=60, cap=60))  # any wait would hang the test
    reflector.run()
    assert api.calls == [
        ("list", None),
        ("watch", "10"),
        ("list", None),
        ("watch", "20"),
        ("watch", "21"),
        ("list", None),
        ("watch", "30"),
        ("watch", "31"),
    ]
    assert recorder.lists == 3
    assert recorder.changes == 1  # the lists found nothing new after the first


def test_a_repeated_gone_without_progress_backs_off() -> None:
    api = ScriptedApi(
        lists=[ListPage([], "1"), ListPage([], "2"), ListPage([], "3")],
        watches=[WatchExpired("gone"), WatchExpired("gone again")],
    )
    reflector, _, _ = make(api)
    reflector.run()
    assert reflector.backoff.failures == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Stream([error(500)]), id="error-event"),
        pytest.param(Stream([], then=ApiUnavailable("connection reset")), id="cut"),
        pytest.param(ApiUnavailable("HTTP 500", status=500), id="http-500"),
    ],
)
def test_other_failures_back_off_then_list_again_and_forget_what_was_deleted_meanwhile(
    failure: Stream | Exception,
) -> None:
    api = ScriptedApi(
        lists=[ListPage([svc("a", "1"), svc("b", "2")], "10"), ListPage([svc("a", "1")], "20")],
        watches=[failure],
    )
    reflector, store, _ = make(api)
    reflector.run()
    assert api.calls[:4] == [("list", None), ("watch", "10"), ("list", None), ("watch", "20")]
    assert names(store) == ["a"]  # b was deleted while the watch was down
    assert reflector.backoff.failures == 1


def test_a_watch_ended_at_once_without_an_event_is_a_failure() -> None:
    api = ScriptedApi(lists=[ListPage([], "10"), ListPage([], "20")], watches=[Stream([]), Stream([bookmark("21")])])
    reflector, _, _ = make(api)
    reflector.run()
    assert api.calls[:4] == [("list", None), ("watch", "10"), ("list", None), ("watch", "20")]
    assert reflector.backoff.failures == 1


def test_it_never_gives_up_and_turns_synced_with_the_first_list_that_works() -> None:
    failures: list[ListPage | Exception] = [ApiUnavailable("refused") for _ in range(6)]
    api = ScriptedApi(lists=[*failures, ListPage([svc("a", "1")], "10")], watches=[])
    reflector, store, recorder = make(api)
    synced_before = reflector.synced
    reflector.run()
    assert not synced_before
    assert reflector.synced
    assert names(store) == ["a"]
    assert recorder.lists == 1
    assert reflector.backoff.failures == 6


def test_pages_are_followed_and_the_version_of_the_list_is_used() -> None:
    api = ScriptedApi(
        lists=[ListPage([svc("a", "1")], "10", "token-1"), ListPage([svc("b", "2")], "10", None)],
        watches=[],
    )
    reflector, store, recorder = make(api)
    reflector.run()
    assert api.calls == [("list", None), ("list", "token-1"), ("watch", "10")]
    assert names(store) == ["a", "b"]
    assert recorder.changes == 1  # one replace for the whole list


def test_malformed_events_are_skipped_and_an_invalid_object_becomes_a_problem() -> None:
    broken = svc("c", "13")
    broken["spec"] = {"ports": [{"port": "not a number"}]}
    api = ScriptedApi(
        lists=[ListPage([svc("a", "1")], "10")],
        watches=[
            Stream(
                [
                    {"type": "ADDED"},
                    {"type": "SURPRISE", "object": svc("x", "11")},
                    event("ADDED", {"metadata": {}}),
                    event("ADDED", broken),
                    event("ADDED", svc("b", "14")),
                ]
            )
        ],
    )
    reflector, store, _ = make(api)
    reflector.run()
    snapshot = store.snapshot()
    assert names(store) == ["a", "b"]
    assert [problem.object_ref for problem in snapshot.problems] == [("Service", "default", "c")]
    assert reflector.backoff.failures == 0


def test_a_watch_that_stayed_up_resets_the_backoff() -> None:
    now = [0.0]

    class LongStream(Stream):
        def __iter__(self) -> Iterator[Event]:
            now[0] += HEALTHY_WATCH_SECONDS + 1
            yield from super().__iter__()

    api = ScriptedApi(
        lists=[ListPage([], "1"), ListPage([], "2"), ListPage([], "3")],
        watches=[Stream([], then=ApiUnavailable("cut")), LongStream([], then=ApiUnavailable("cut"))],
    )
    reflector, _, _ = make(api, clock=lambda: now[0])
    reflector.run()
    # The second failure came after a healthy watch: counted from scratch, not as the second in a row.
    assert reflector.backoff.failures == 1


def test_the_backoff_is_exponential_capped_and_jittered() -> None:
    low = Backoff(base=1, cap=8, rng=lambda: 0.0)
    assert [low.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    high = Backoff(base=1, cap=8, rng=lambda: 1.0)
    assert [high.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    high.reset()
    assert high.next_delay() == 1
    jittered = Backoff(base=1, cap=8)
    delays = [jittered.next_delay() for _ in range(200)]
    assert all(4 <= delay <= 8 for delay in delays[3:])
    assert len(set(delays[3:])) > 100  # spread, so replicas that failed together do not retry together


def test_a_relist_request_cuts_the_open_watch_and_stop_ends_a_blocked_one() -> None:
    first, second = Stream([], block=True), Stream([], block=True)
    api = ScriptedApi(lists=[ListPage([svc("a", "1")], "10"), ListPage([], "20")], watches=[first, second])
    reflector, store, recorder = make(api, backoff=Backoff(base=60, cap=60))
    reflector.start()
    try:
        wait_until(lambda: ("watch", "10") in api.calls, timeout=5, message="the first watch")
        reflector.request_relist()
        wait_until(lambda: ("watch", "20") in api.calls, timeout=5, message="a list and a new watch")
        assert first.aborted.is_set()
        assert first.closed
        assert names(store) == []
        assert recorder.lists == 2
        assert reflector.backoff.failures == 0  # our own cut is not a failure
    finally:
        reflector.stop()
        reflector.join(5)
    assert second.aborted.is_set()
    assert reflector._thread is not None
    assert not reflector._thread.is_alive()
