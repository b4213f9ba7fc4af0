"""The Kubernetes route source: Ingresses, IngressClasses, Services, EndpointSlices and Secrets
from the API server, published as snapshots.

One :class:`~.reflector.Reflector` per kind and watched namespace (or one per kind for the
whole cluster; IngressClasses are cluster-scoped, so always one), each in its own daemon
thread, mirrors objects into one :class:`~.store.ObjectStore`. Changes wake the event loop,
which waits for a short quiet period (``kubernetes.debounce``, at most
:data:`MAX_DEBOUNCE_FACTOR` times that under constant churn) and publishes one snapshot of
the whole store. Nothing is published before every reflector has finished its first list,
so the gateway turns ready only with the complete cluster state.

Secrets are watched, but kept only while referenced (:mod:`.references`). They are listed
after the Ingresses, so the first list already knows what to keep; when an Ingress starts
referring to a Secret that was dropped, the Secret reflectors list again and the snapshot
waits for them, so the route never sees its Secret missing.

When ``kubernetes.update_status`` or ``kubernetes.events`` is on, a
:class:`~.controller.StatusController` runs beside the reflectors and sees every table the
gateway builds (:meth:`KubernetesSource.table_built`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import ApiClient

from gateway_core.manifests.snapshot import Snapshot
from gateway_core.providers.base import Publish
from gateway_core.providers.kubernetes.client import (
    INGRESS,
    SECRET,
    WATCHED_KINDS,
    KubernetesListWatch,
    WatchedKind,
    api_client,
)
from gateway_core.providers.kubernetes.controller import StatusController
from gateway_core.providers.kubernetes.references import SecretReferences, secret_references
from gateway_core.providers.kubernetes.reflector import Backoff, Reflector
from gateway_core.providers.kubernetes.store import ObjectStore
from gateway_core.routing.table import RouteTable
from gateway_core.settings import GatewaySettings, KubernetesSettings

logger = logging.getLogger("gateway_core.providers.kubernetes")

SECRET_RELIST_WAIT = 5.0
"""Seconds a snapshot waits for Secrets that an Ingress started to use to be listed again."""
MAX_DEBOUNCE_FACTOR = 5
"""Under changes that never pause, a table is still built every ``debounce`` times this."""


def identity() -> str:
    """This process's name in leader election: the pod (or host) name and the process id."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


class KubernetesSource:
    """A route source watching the Kubernetes API (``gateway run --kubernetes``)."""

    def __init__(self, settings: GatewaySettings, *, api: ApiClient | None = None) -> None:
        self.settings = settings.kubernetes
        self.default_configs: Mapping[str, Mapping[str, Any]] = settings.plugins.config
        self.api = api if api is not None else api_client(self.settings)
        self.controller: StatusController | None = None

    async def run(self, publish: Publish) -> None:
        """Watch until cancelled; publish the first snapshot once everything was listed."""
        watch = ClusterWatch(self.api, self.settings, self.default_configs)
        try:
            if self.settings.update_status or self.settings.events:
                self.controller = StatusController(self.api, self.settings, identity=identity())
                await self.controller.start()
            await watch.serve(publish)
        finally:
            watch.stop()
            if self.controller is not None:
                controller, self.controller = self.controller, None
                await controller.stop()

    async def table_built(self, table: RouteTable) -> None:
        """Hand every table the gateway built to the status controller (status and Events)."""
        if self.controller is not None:
            await self.controller.table_built(table)


class ClusterWatch:
    """The reflectors of one :meth:`KubernetesSource.run`, the store they fill, and the loop
    that turns their changes into snapshots."""

    def __init__(
        self,
        api: ApiClient,
        settings: KubernetesSettings,
        default_configs: Mapping[str, Mapping[str, Any]],
        *,
        backoff_base: float = 0.5,
    ) -> None:
        self.settings = settings
        self.default_configs = default_configs
        self.references = SecretReferences()
        self.store = ObjectStore(keep_secret=self._keep_secret)
        self.wake = asyncio.Event()
        self.dirty = True
        """The store changed since the last snapshot was published (the first is always due)."""
        self._loop = asyncio.get_running_loop()
        self._relists: dict[Reflector, int] = {}
        """Secret reflectors asked to list again, and the number of the list that answers it."""
        self._relists_deadline = 0.0
        scopes: list[str | None] = list(dict.fromkeys(settings.namespaces)) or [None]
        self.reflectors: dict[str, list[Reflector]] = {}
        for kind in WATCHED_KINDS:
            self.reflectors[kind.kind] = [
                self._reflector(api, kind, namespace, backoff_base)
                for namespace in (scopes if kind.namespaced else [None])
            ]

    def _reflector(self, api: ApiClient, kind: WatchedKind, namespace: str | None, backoff_base: float) -> Reflector:
        return Reflector(
            KubernetesListWatch(api, kind, namespace, watch_timeout=self.settings.watch_timeout),
            self.store.scope(kind.kind, kind.api_version, namespace),
            on_change=self._changed,
            on_listed=self._listed,
            backoff=Backoff(base=backoff_base, cap=self.settings.backoff_max),
        )

    def _keep_secret(self, namespace: str, name: str) -> bool:
        return self.references(namespace, name)

    def _listed(self, reflector: Reflector) -> None:
        """A list finished (the first one, or one asked for): wake the loop to look."""
        self._call_soon(self.wake.set)

    def _changed(self) -> None:
        """The store changed: wake the loop to publish."""
        self._call_soon(self._mark_dirty)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop (reflectors call from their threads)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is shutting down
            self._loop.call_soon_threadsafe(callback)

    def _mark_dirty(self) -> None:
        self.dirty = True
        self.wake.set()

    def all_reflectors(self) -> list[Reflector]:
        return [reflector for group in self.reflectors.values() for reflector in group]

    def stop(self) -> None:
        for reflector in self.all_reflectors():
            reflector.stop()

    async def serve(self, publish: Publish) -> None:
        """Start the reflectors, then publish a snapshot after every settled change."""
        for kind, group in self.reflectors.items():
            if kind != SECRET.kind:
                for reflector in group:
                    reflector.start()
        # Ingresses first, so the Secrets' first list already knows which ones to keep.
        await self._wake_until(lambda: all(reflector.synced for reflector in self.reflectors[INGRESS.kind]))
        self.references = await asyncio.to_thread(self._current_references)
        for reflector in self.reflectors[SECRET.kind]:
            reflector.start()
        await self._wake_until(lambda: all(reflector.synced for reflector in self.all_reflectors()))
        logger.info(
            "listed %s in %s",
            ", ".join(f"{self.store.count(kind)} {kind}" for kind in self.reflectors),
            ", ".join(self.settings.namespaces) or "all namespaces",
        )
        while True:
            await self._quiet()
            # Off the event loop: plugin annotations are parsed, the store is copied.
            snapshot = await asyncio.to_thread(self._settled_snapshot)
            if snapshot is not None:
                await publish(snapshot)
            await self._next_wake()

    async def _wake_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.wake.wait()
            self.wake.clear()

    async def _next_wake(self) -> None:
        """Wait for a change, or for the end of the wait for Secrets being listed again."""
        timeout = max(0.0, self._relists_deadline - time.monotonic()) if self._relists else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    async def _quiet(self) -> None:
        """Wait until no change came for ``debounce`` seconds (bounded under constant churn)."""
        debounce = self.settings.debounce
        if debounce <= 0:
            return
        deadline = self._loop.time() + debounce * MAX_DEBOUNCE_FACTOR
        while True:
            self.wake.clear()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.wake.wait(), min(debounce, remaining))
            except TimeoutError:
                return

    def _current_references(self) -> SecretReferences:
        return secret_references(self.store.ingresses(), self.default_configs)

    def _settled_snapshot(self) -> Snapshot | None:
        """A snapshot to publish: None when nothing changed, or Secrets are still on their way."""
        if not self._secrets_settled() or not self.dirty:
            return None
        self.dirty = False  # before the copy: a change after it marks the store dirty again
        return self.store.snapshot()

    def _secrets_settled(self) -> bool:
        """Follow the Ingresses' Secret references; False while Secrets are being listed again.

        A reference to a Secret that was dropped needs its data: the Secret reflectors list
        again, and the snapshot waits for them (at most :data:`SECRET_RELIST_WAIT` seconds: an
        API server that cannot list Secrets must not freeze every other change). A reference
        that went away drops its Secret.
        """
        references = self._current_references()
        if not self.references.covers(references):
            self.references = references
            self._relists_deadline = time.monotonic() + SECRET_RELIST_WAIT
            for reflector in self.reflectors[SECRET.kind]:
                # A list already running may have filtered with the old references.
                self._relists[reflector] = reflector.lists_started + 1
                reflector.request_relist()
        elif references != self.references:
            self.references = references
            self.dirty = self.store.prune_secrets() or self.dirty
        self._relists = {
            reflector: wanted for reflector, wanted in self._relists.items() if reflector.lists_completed < wanted
        }
        if self._relists and time.monotonic() >= self._relists_deadline:
            logger.warning(
                "Secrets newly referenced by Ingresses are still not listed after %gs; publishing without "
                "them (the Ingresses needing them are rejected until they arrive)",
                SECRET_RELIST_WAIT,
            )
            self._relists = {}
        return not self._relists
