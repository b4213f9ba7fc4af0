"""What the gateway writes back to the cluster: Ingress status and Events, by the elected leader.

The Kubernetes route source hands every published table to :meth:`StatusController.table_built`.
That only stores the table and wakes a worker task, so a burst of tables costs one pass over
the latest. The pass runs in a worker thread (the client is synchronous) and only while this
replica leads; a failed pass is logged and retried with backoff, and a pass also runs
periodically, so a publish Service that gets its load-balancer address late is followed.
A replica that becomes leader forgets what it knew and reconciles from the API server.
On stop the leader clears the status it wrote (when configured) before releasing the Lease,
so the next leader's writes are not undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading

from kubernetes.client import ApiClient

from gateway_core.providers.kubernetes.events import IngressEventRecorder
from gateway_core.providers.kubernetes.leader import LeaderElector
from gateway_core.providers.kubernetes.status import IngressStatusWriter
from gateway_core.routing.table import RouteTable
from gateway_core.settings import KubernetesSettings

logger = logging.getLogger("gateway_core.providers.kubernetes.controller")

RESYNC_SECONDS = 30.0
"""Seconds between passes when no table arrives (follows a publish address that changes)."""
REQUEST_TIMEOUT = 10.0
"""Seconds one status or Event API call may take."""


def served_ingresses(table: RouteTable) -> frozenset[str]:
    """``namespace/name`` of every Ingress with at least one route that is served (not 503)."""
    return frozenset(route.info.ingress_ref for route in table.routes if route.unavailable is None)


def lease_namespace(settings: KubernetesSettings) -> str:
    """The Lease's namespace: configured, else the pod's (``POD_NAMESPACE``), else ``default``."""
    return settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"


class StatusController:
    """Leader election, Ingress status and Events for one gateway process."""

    def __init__(self, api: ApiClient, settings: KubernetesSettings, *, identity: str) -> None:
        self.settings = settings
        self.identity = identity
        self.elector = (
            LeaderElector(
                api,
                name=settings.lease_name,
                namespace=lease_namespace(settings),
                identity=identity,
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                on_change=self._leadership_changed,
            )
            if settings.leader_election
            else None
        )
        self.status = (
            IngressStatusWriter(
                api,
                publish_service=settings.publish_service,
                publish_addresses=settings.publish_status_address,
                default_namespace=os.environ.get("POD_NAMESPACE") or settings.namespace,
                request_timeout=REQUEST_TIMEOUT,
            )
            if settings.update_status
            else None
        )
        self.events = (
            IngressEventRecorder(api, instance=identity, request_timeout=REQUEST_TIMEOUT) if settings.events else None
        )
        self._latest: RouteTable | None = None
        self._wake = asyncio.Event()
        self._writing = threading.Lock()
        """Held by a pass and by the shutdown clear, which may overlap a pass's thread."""
        self._reconcile = False
        """Set on becoming leader: the next pass forgets what it knew and reads the API server."""
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    @property
    def leading(self) -> bool:
        """True while this replica may write (always, once started, without leader election)."""
        if not self._started:
            return False
        return self.elector.leading if self.elector is not None else True

    async def start(self) -> None:
        """Start competing for leadership (or lead at once without election) and the writer task."""
        if self._started:
            return
        self._started = True
        if self.status is not None and not self.status.configured:
            logger.warning(
                "kubernetes.update_status is on but neither publish_service nor publish_status_address is set: "
                "Ingress status is not written"
            )
        self._tasks.append(asyncio.create_task(self._work(), name="kubernetes-status-writer"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(), name="kubernetes-leader-election"))
        else:
            logger.info("leader election off: this replica writes Ingress status and Events")

    async def table_built(self, table: RouteTable) -> None:
        """Remember ``table`` as the latest and wake the writer (returns at once, never raises)."""
        self._latest = table
        self._wake.set()

    async def stop(self) -> None:
        """Stop writing; clear the status if configured and leading; release the Lease."""
        if not self._started:
            return
        leading = self.leading
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if leading and self.status is not None and self.settings.update_status_on_shutdown:
            try:
                await asyncio.to_thread(self._clear_status)
            except Exception as exc:
                logger.warning("clearing Ingress status on shutdown failed: %s", exc or type(exc).__name__)
        if self.elector is not None:
            await self.elector.release()
        self._started = False

    def _leadership_changed(self, leading: bool) -> None:
        if leading:
            self._reconcile = True
            self._wake.set()

    async def _work(self) -> None:
        failures = 0
        delay = RESYNC_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            table = self._latest
            if table is None or not self.leading:
                delay = RESYNC_SECONDS
                continue
            try:
                await asyncio.to_thread(self._pass, table)
            except Exception as exc:
                failures += 1
                delay = min(self.settings.backoff_max, 0.5 * 2**failures)
                logger.warning(
                    "writing Ingress status/Events failed (%s); retrying in %.1fs", exc or type(exc).__name__, delay
                )
            else:
                failures = 0
                delay = RESYNC_SECONDS

    def _pass(self, table: RouteTable) -> None:
        """Status, then Events, for ``table`` (blocking). Raises the first failure after trying both."""
        served = served_ingresses(table)
        errors: list[Exception] = []
        with self._writing:
            if self._reconcile:
                self._reconcile = False
                if self.status is not None:
                    self.status.forget()
                if self.events is not None:
                    self.events.forget()
            if self.status is not None:
                try:
                    self.status.sync(served)
                except Exception as exc:
                    errors.append(exc)
            if self.events is not None:
                try:
                    self.events.record(table.rejected, served)
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def _clear_status(self) -> None:
        with self._writing:
            if self.status is not None:
                self.status.clear()
