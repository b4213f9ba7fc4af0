"""kmock as a Kubernetes API server for the gateway's tests: ``python kmock_emulator.py --port P``.

It serves ``kmock.KubernetesEmulator`` (objects in memory, list and watch over real HTTP)
with a small subclass that closes the gaps kmock 0.8 has as an API server for the official
client, and adds what end-to-end tests need:

- create fills ``metadata.namespace`` from the URL, honours ``generateName`` and stamps
  ``uid``, ``creationTimestamp`` (unless given) and ``resourceVersion``; every write bumps a
  server-wide ``resourceVersion`` counter, and lists carry ``kind``, ``apiVersion`` and it;
- PUT replaces an object (MODIFIED event); a write naming a stale ``resourceVersion`` is a
  409 Conflict, so optimistic concurrency (leader election) behaves as on a real server;
- a ``/status`` write changes only ``.status``;
- watches subscribe before replaying the current objects (kmock 0.8 can lose an event
  written between the two), end after ``timeoutSeconds``, and send BOOKMARKs when asked to
  (``--bookmark-interval``: after that many idle seconds);
- ``/_kmock/*`` test endpoints: the request log, failing the next requests with an HTTP
  status, cutting open watches (ERROR 410, ERROR 500 or a plain close), open-watch counts.

What stays simplified: a watch ignores ``resourceVersion`` and replays every live object as
ADDED (as a real server does for a watch without one), never answers 410 by itself, and
deletions during a gap between two watches are never reported. Selectors, ``limit`` and
``continue`` are ignored. Tests that need those behaviours inject them, or are unit tests.

It touches kmock internals (``_objects``, ``_buses``, ``_lock``): kmock is pinned to 0.8.
The tests drive it through :mod:`kmock_server`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import json
import secrets
import signal
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, dicts, enums, rendering

ADMIN_PREFIX = "/_kmock/"
"""Where the test endpoints live (no Kubernetes path starts so)."""


def resource_key(group: str | None, version: str | None, plural: str | None) -> str:
    """``networking.k8s.io/v1/ingresses``, or ``v1/services`` for the core group."""
    return "/".join(part for part in (group, version, plural) if part)


@dataclass
class _Watch:
    """One open watch stream: its resource and the queue a cut is delivered through."""

    resource: str
    cuts: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@attrs.define(kw_only=True)
class GatewayTestEmulator(kmock.KubernetesEmulator):
    """``KubernetesEmulator`` with the fixes and test endpoints of the module docstring."""

    bookmark_interval: float = 0.0
    _revision: int = attrs.field(default=0, init=False)
    _faults: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    _watches: list[_Watch] = attrs.field(factory=list, init=False)

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.url.path.startswith(ADMIN_PREFIX):
            return await self._admin(request)
        fault = self._take_fault(request)
        if fault is not None:
            code = int(fault["status"])
            return aiohttp.web.json_response(_status(code, "Injected", f"injected HTTP {code}"), status=code)
        if request.resource is None:
            return await super()._handle(request)
        try:
            replaced = await self._write(request)
        except kmock.KubernetesError as exc:
            return await self._render_error(exc)
        if replaced is not None:  # create and PUT answer the stored object here
            created = request.action == enums.action.CREATE
            return aiohttp.web.json_response(replaced, status=201 if created else 200)
        # The write is done; kmock's own handlers (list, fetch, patch, delete) render the answer.
        return await apps.RawHandler._handle(self, request)

    def _take_fault(self, request: rendering.Request) -> dict[str, Any] | None:
        if request.resource is None:
            return None
        key = resource_key(request.resource.group, request.resource.version, request.resource.plural)
        action = (request.action.value if request.action else request.method.value).lower()
        for fault in self._faults:
            if fault["resource"] == key and fault["action"] == action and fault["count"] > 0:
                fault["count"] -= 1
                return fault
        return None

    async def _write(self, request: rendering.Request) -> dict[str, Any] | None:
        """Apply a create, patch, replace or delete to the stored objects.

        Returns the stored object after a create or a replace (kmock renders the others).
        The request's own data is never changed: the request log shows what the client sent.
        """
        assert request.resource is not None
        resource = request.resource
        bus = self._buses[resource]
        async with self._lock:
            if request.action == enums.action.CREATE:
                data = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
                meta = data.setdefault("metadata", {})
                if request.namespace:
                    meta["namespace"] = request.namespace
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + secrets.token_hex(3)
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta["resourceVersion"] = self._next_revision()
                key = (resource, meta.get("namespace"), meta.get("name"))
                if key not in self._objects:
                    self._objects[key] = data
                elif not self._objects[key].deleted:
                    raise _conflict("already exists")
                else:
                    self._objects[key].create(data)
                raw = self._objects[key].raw
                await bus.put({"type": "ADDED", "object": raw})
                return raw
            if request.name is None:
                return None
            key = (resource, request.namespace, request.name)
            exists = key in self._objects and not self._objects[key].deleted
            if request.method == enums.method.PUT or request.action == enums.action.UPDATE:
                if not exists:
                    raise kmock.KubernetesObjectNotFoundError()
                stored = self._objects[key]
                current = copy.deepcopy(stored.raw)
                body = request.data
                _check_precondition(current, body)
                if request.method == enums.method.PUT:
                    new = copy.deepcopy(body) if isinstance(body, dict) else {}
                    if request.subresource == "status":
                        new = {**current, "status": new.get("status")}
                else:
                    if request.subresource == "status" and isinstance(body, dict):
                        body = {"status": body.get("status")}
                    new = dict(dicts.patch_dict(current, body))
                meta = new.setdefault("metadata", {})
                for name in ("name", "namespace", "uid", "creationTimestamp"):
                    if name in current["metadata"]:
                        meta[name] = current["metadata"][name]
                meta["resourceVersion"] = self._next_revision()
                stored.create(new)
                raw = stored.raw
                await bus.put({"type": "MODIFIED", "object": raw})
                return raw if request.method == enums.method.PUT else None
            if request.action == enums.action.DELETE:
                if not exists:
                    raise kmock.KubernetesObjectNotFoundError()
                stored = self._objects[key]
                meta = stored.raw.get("metadata", {})
                if meta.get("deletionTimestamp"):
                    return None
                if meta.get("finalizers"):
                    stored.patch({"metadata": {"deletionTimestamp": _now(), "resourceVersion": self._next_revision()}})
                    await bus.put({"type": "MODIFIED", "object": stored.raw})
                    return None
                last = copy.deepcopy(stored.raw)
                last["metadata"]["resourceVersion"] = self._next_revision()
                stored.create(last)
                stored.delete()
                await bus.put({"type": "DELETED", "object": last})
        return None

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict)
        assert request.resource is not None
        payload["apiVersion"] = self._api_version(request.resource)
        payload["kind"] = f"{self._kind(request.resource)}List"
        payload["metadata"] = {"resourceVersion": str(self._revision)}
        return payload

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # start the response at once, as a real server does
        assert request.resource is not None
        resource = request.resource
        key = resource_key(resource.group, resource.version, resource.plural)
        bus = self._buses[resource]
        async with self._lock:  # subscribe and snapshot together: no write falls in between
            marker = await bus.mark()
            current = [
                obj.raw
                for (obj_resource, namespace, _), obj in self._objects.items()
                if obj_resource == resource and not obj.deleted and request.namespace in (None, namespace)
            ]
        watch = _Watch(key)
        self._watches.append(watch)
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def pump() -> None:
            async for event in bus.stream(since=marker):
                namespace = event.get("object", {}).get("metadata", {}).get("namespace")
                if request.namespace in (None, namespace):
                    await events.put(event)

        pumping = asyncio.create_task(pump())
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        bookmarks = request.params.get("allowWatchBookmarks") == "true" and self.bookmark_interval > 0
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        try:
            for obj in current:
                yield {"type": "ADDED", "object": obj}
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        return
                    wait = min(wait, left) if wait is not None else left
                next_event = asyncio.ensure_future(events.get())
                next_cut = asyncio.ensure_future(watch.cuts.get())
                done, _ = await asyncio.wait({next_event, next_cut}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (next_event, next_cut):
                    if waiter not in done:
                        waiter.cancel()
                if next_cut in done:
                    mode = next_cut.result()
                    if mode == "gone":
                        yield {"type": "ERROR", "object": _status(410, "Expired", "too old resource version")}
                    elif mode == "error":
                        yield {"type": "ERROR", "object": _status(500, "InternalError", "injected watch error")}
                    return
                if next_event in done:
                    yield next_event.result()
                elif bookmarks:
                    yield {
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": self._api_version(resource),
                            "kind": self._kind(resource),
                            "metadata": {"resourceVersion": str(self._revision)},
                        },
                    }
        finally:
            pumping.cancel()
            self._watches.remove(watch)
            with contextlib.suppress(Exception):
                await bus.unmark(marker)

    @staticmethod
    def _api_version(resource: kmock.resource) -> str:
        return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)

    def _kind(self, resource: kmock.resource) -> str:
        info = self.resources[resource] if resource in self.resources else None  # noqa: SIM401 - not a dict
        return info.kind if info is not None and info.kind else "Object"

    async def _admin(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        command = request.url.path[len(ADMIN_PREFIX) :]
        body = request.data if isinstance(request.data, dict) else {}
        if command == "requests":
            since = int(request.params.get("since", "0"))
            rows = [_describe(item) for item in self._requests[since:] if not item.url.path.startswith(ADMIN_PREFIX)]
            return aiohttp.web.json_response(rows)
        if command == "fail":
            fault = {
                "resource": body["resource"],
                "action": body.get("action", "watch"),
                "status": int(body.get("status", 500)),
                "count": int(body.get("count", 1)),
            }
            self._faults.append(fault)
            return aiohttp.web.json_response(fault)
        if command == "cut":
            cut = [watch for watch in self._watches if watch.resource == body["resource"]]
            for watch in cut:
                watch.cuts.put_nowait(body.get("mode", "close"))
            return aiohttp.web.json_response({"cut": len(cut)})
        if command == "watches":
            counts: dict[str, int] = {}
            for watch in self._watches:
                counts[watch.resource] = counts.get(watch.resource, 0) + 1
            return aiohttp.web.json_response(counts)
        return aiohttp.web.json_response(_status(404, "NotFound", f"no test endpoint {command!r}"), status=404)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conflict(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=409, reason="Conflict", message=message)


def _check_precondition(current: Mapping[str, Any], body: Any) -> None:
    """A write naming a resourceVersion applies only to that version (optimistic concurrency)."""
    if not isinstance(body, dict):
        return
    wanted = (body.get("metadata") or {}).get("resourceVersion")
    have = current.get("metadata", {}).get("resourceVersion")
    if wanted and wanted != have:
        raise _conflict(f"the object has been modified (resourceVersion {wanted} is not {have})")


def _describe(request: rendering.Request) -> dict[str, Any]:
    resource = request.resource
    data = request.data
    try:
        json.dumps(data)
    except TypeError:
        data = None
    return {
        "id": request.id,
        "method": request.method.value,
        "path": request.url.path,
        "params": dict(request.params),
        "action": request.action.value.lower() if request.action else None,
        "resource": resource_key(resource.group, resource.version, resource.plural) if resource else None,
        "namespace": request.namespace,
        "name": request.name,
        "subresource": request.subresource,
        "data": data,
        "headers": dict(request.headers),
    }


async def serve(port: int, bookmark_interval: float) -> None:
    """Serve until SIGTERM or SIGINT."""
    emulator = GatewayTestEmulator(bookmark_interval=bookmark_interval)
    emulator.resources.load_bundled()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with emulator, kmock.Server(emulator, host="127.0.0.1", port=port):
        print(f"kmock serving on 127.0.0.1:{port}", flush=True)
        await stop.wait()
        # End the open watches, or the server's shutdown waits for them (clients still watching).
        for watch in list(emulator._watches):
            watch.cuts.put_nowait("close")
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bookmark-interval", type=float, default=0.0, help="seconds; 0 = no BOOKMARK events")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.bookmark_interval))


if __name__ == "__main__":
    main()
