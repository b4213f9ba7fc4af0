"""Leader election over a ``coordination.k8s.io/v1`` Lease: one replica writes status and Events.

Every replica is a candidate. Each ``retry_period`` it reads the Lease and acts: create it
when absent; renew it when it holds it; take it over when it is free (no holder) or expired
(``renewTime + leaseDurationSeconds`` before now, by the wall clock, so clocks are assumed to
agree to well under a lease duration). A leader whose renewals keep failing steps down once
``renew_deadline`` has passed since its last good renewal, before anyone else may consider the
Lease expired (``renew_deadline < lease_duration``). On stop the leader releases the Lease by
clearing ``holderIdentity``, so another replica takes over at its next attempt.

Updates are merge PATCHes (RBAC: get, create, patch on the Lease). Each carries the
``metadata.resourceVersion`` just read, which makes it conditional on a real API server: of
two candidates racing for an expired Lease only one write succeeds, the other gets
``409 Conflict`` and follows. A server without resourceVersions (plain kmock 0.8, which also
has no PUT) cannot refuse the second write: there two candidates racing in the same instant
can both believe they won for one retry period, until the next read shows who holds it.
(The tests' kmock subclass stamps resourceVersions and answers 409, like a real server.)

The client library's own ``kubernetes.leaderelection`` is not used: it blocks a thread with
``time.sleep`` for the whole election, writes with PUT, stops competing once it loses the
lead, and has no release.

The synchronous client runs in worker threads; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client import ApiClient, ApiException, CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta

from gateway_core.providers.kubernetes.calls import json_object, micro_time, not_found, parse_time

logger = logging.getLogger("gateway_core.providers.kubernetes.leader")


class Attempt(enum.Enum):
    """The outcome of one election attempt."""

    LEADING = "leading"
    """This candidate holds the Lease (created, renewed or taken over)."""
    FOLLOWING = "following"
    """Another candidate holds a valid Lease, or won a race for it."""
    FAILED = "failed"
    """The API call failed; who holds the Lease is unknown."""


def lease_expired(spec: dict[str, Any], now: datetime, *, default_duration: float) -> bool:
    """Whether the Lease ``spec`` may be taken: no holder, no valid renewTime, or not renewed in time."""
    if not spec.get("holderIdentity"):
        return True
    renewed = parse_time(spec.get("renewTime"))
    if renewed is None:
        return True
    duration = spec.get("leaseDurationSeconds")
    seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else default_duration
    return renewed + timedelta(seconds=seconds) < now


class LeaderElector:
    """One candidate for the Lease ``namespace/name``, identified by ``identity``."""

    def __init__(
        self,
        api: ApiClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.leases = CoordinationV1Api(api)
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.lease_seconds = max(1, math.ceil(lease_duration))
        """``leaseDurationSeconds`` as written (the API takes whole seconds)."""
        self.request_timeout = max(0.5, min(5.0, renew_deadline / 2))
        """Seconds one API call may take, so a hung call cannot outlast the renew deadline by much."""
        self._leading = False
        self._stopped = False
        self._failing = False
        self._lock = threading.Lock()
        if renew_deadline >= lease_duration:
            logger.warning(
                "renew_deadline (%gs) should be shorter than lease_duration (%gs): a leader that cannot renew "
                "may still think it leads after another replica took over",
                renew_deadline,
                lease_duration,
            )

    @property
    def leading(self) -> bool:
        """True while this candidate holds the Lease (as of its last attempt)."""
        return self._leading

    def try_acquire_or_renew(self) -> Attempt:
        """One election attempt: create, renew or take over the Lease if possible (blocking)."""
        with self._lock:
            if self._stopped:
                return Attempt.FAILED
            try:
                attempt = self._attempt()
            except ApiException as exc:
                if exc.status != 409:
                    return self._failed(f"API error {exc.status} {exc.reason}")
                attempt = Attempt.FOLLOWING  # lost a race: another candidate wrote it first
            except Exception as exc:  # connection refused, timeout, an unreadable answer
                return self._failed(str(exc) or type(exc).__name__)
            if self._failing:
                logger.info("Lease %s/%s reachable again", self.namespace, self.name)
                self._failing = False
            return attempt

    def _failed(self, why: str) -> Attempt:
        """Log a failed attempt: a warning for the first of a series, then quietly."""
        level = logging.DEBUG if self._failing else logging.WARNING
        logger.log(level, "Lease %s/%s: %s (retrying every %gs)", self.namespace, self.name, why, self.retry_period)
        self._failing = True
        return Attempt.FAILED

    def release_blocking(self) -> bool:
        """Stop competing; clear ``holderIdentity`` if we hold the Lease. True when released."""
        with self._lock:
            self._stopped = True
            try:
                lease = self._read()
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    return False
                now = micro_time(datetime.now(UTC))
                spec = {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now}
                self._patch(lease, spec)
                return True
            except Exception as exc:
                logger.warning("releasing Lease %s/%s failed: %s", self.namespace, self.name, exc)
                return False

    async def run(self) -> None:
        """Compete for the Lease until cancelled: an attempt every ``retry_period``."""
        last_renewal = time.monotonic()
        while True:
            attempt = await asyncio.to_thread(self.try_acquire_or_renew)
            now = time.monotonic()
            if attempt is Attempt.LEADING:
                last_renewal = now
                self._set_leading(True)
            elif attempt is Attempt.FOLLOWING:
                self._set_leading(False)
            elif self._leading and now - last_renewal >= self.renew_deadline:
                logger.error(
                    "could not renew Lease %s/%s for %gs; stepping down", self.namespace, self.name, self.renew_deadline
                )
                self._set_leading(False)
            await asyncio.sleep(self.retry_period)

    async def release(self) -> None:
        """Stop competing and release the Lease if held (never raises)."""
        released = await asyncio.to_thread(self.release_blocking)
        if released:
            logger.info("released Lease %s/%s", self.namespace, self.name)
        self._set_leading(False)

    def _attempt(self) -> Attempt:
        now = datetime.now(UTC)
        lease = self._read()
        if lease is None:
            self._create(now)
            return Attempt.LEADING
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder == self.identity:
            self._patch(lease, self._record(now, acquired=False, spec=spec))
            return Attempt.LEADING
        if not lease_expired(spec, now, default_duration=self.lease_duration):
            return Attempt.FOLLOWING
        self._patch(lease, self._record(now, acquired=True, spec=spec))
        logger.info("took over Lease %s/%s (previous holder: %s)", self.namespace, self.name, holder or "none")
        return Attempt.LEADING

    def _record(self, now: datetime, *, acquired: bool, spec: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": micro_time(now),
        }
        if acquired:
            transitions = spec.get("leaseTransitions")
            record["acquireTime"] = micro_time(now)
            record["leaseTransitions"] = (transitions if isinstance(transitions, int) else 0) + 1
        return record

    def _read(self) -> dict[str, Any] | None:
        try:
            response = self.leases.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if not_found(exc):
                return None
            raise
        return json_object(response)

    def _create(self, now: datetime) -> None:
        body = V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.lease_seconds,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        self.leases.create_namespaced_lease(
            self.namespace, body, _preload_content=False, _request_timeout=self.request_timeout
        )
        logger.info("created Lease %s/%s; leading", self.namespace, self.name)

    def _patch(self, lease: dict[str, Any], spec: dict[str, Any]) -> None:
        body: dict[str, Any] = {"spec": spec}
        version = (lease.get("metadata") or {}).get("resourceVersion")
        if version:  # a precondition on a real API server: 409 if someone wrote since our read
            body["metadata"] = {"resourceVersion": version}
        self.leases.patch_namespaced_lease(
            self.name, self.namespace, body, _preload_content=False, _request_timeout=self.request_timeout
        )

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        logger.info(
            "%s Lease %s/%s as %s",
            "leading with" if leading else "no longer leading with",
            self.namespace,
            self.name,
            self.identity,
        )
        if self.on_change is not None:
            try:
                self.on_change(leading)
            except Exception:
                logger.exception("a leadership observer failed")
