"""Kubernetes Events on Ingresses: ``Warning Rejected`` with the reasons, ``Normal Accepted`` once fixed.

One Event stands for one distinct rejection (Ingress, type, reason, message). Rebuilding the
table while the rejection persists records nothing; when it comes back after a fix, the
existing Event's ``count`` and ``lastTimestamp`` are patched rather than a new Event created,
as ``kubectl describe`` expects (``x3 over 10m``). Event names are derived from the Ingress
uid and the message, so a new leader (or a restarted gateway) finds the same Event (its
create answers 409) and counts on it; explicit names also suit kmock, which ignores
``generateName``. Only ``create`` and ``patch`` are used on Events (the RBAC the deployment
grants): a patch answers the Event, so its count is learnt without reading it. Messages are
cut to 1 KiB. core/v1 Events are used, which every API server serves.

Blocking: every method runs the synchronous client and belongs in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import (
    ApiClient,
    ApiException,
    CoreV1Api,
    CoreV1Event,
    NetworkingV1Api,
    V1EventSource,
    V1ObjectMeta,
    V1ObjectReference,
)

from gateway_core.providers.kubernetes.calls import json_object, not_found, read_ingress, worth_retrying
from gateway_core.routing.table import RejectedIngress

logger = logging.getLogger("gateway_core.providers.kubernetes.events")

COMPONENT = "meta-native-gateway"
MESSAGE_LIMIT = 1024
"""Bytes of an Event message (UTF-8); longer reasons are cut."""
ACCEPTED_MESSAGE = "the Ingress is valid again; its routes are served"


def truncate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to ``limit`` UTF-8 bytes (on a character boundary), marked with an ellipsis."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    return encoded[: limit - len("…".encode())].decode(errors="ignore") + "…"


def rejection_message(rejected: RejectedIngress) -> str:
    """The Event message for a rejection: its reasons, joined and cut to the limit."""
    return truncate("; ".join(rejected.reasons))


def event_name(ingress: str, uid: str, event_type: str, reason: str, message: str) -> str:
    """A stable Event name for one distinct occurrence: ``<ingress>.<16 hex digits>``."""
    digest = hashlib.sha256("\0".join((uid, event_type, reason, message)).encode()).hexdigest()[:16]
    return f"{ingress[: 253 - 17]}.{digest}"


@dataclass(frozen=True, slots=True)
class _Occurrence:
    """One thing to record: on Ingress ``ref`` (``namespace/name``), an Event of ``event_type``."""

    ref: str
    event_type: str
    reason: str
    message: str


class IngressEventRecorder:
    """Records one Event per distinct rejection and one when a rejected Ingress is accepted again."""

    def __init__(self, api: ApiClient, *, instance: str, request_timeout: float = 10.0) -> None:
        self.core = CoreV1Api(api)
        self.networking = NetworkingV1Api(api)
        self.instance = instance
        self.request_timeout = request_timeout
        self._active: dict[str, str] = {}
        """Per rejected Ingress ``namespace/name``: the message of the rejection recorded."""
        self._counts: dict[str, dict[str, int]] = {}
        """Per Ingress ``namespace/name``, per Event name: the Event's count as last written."""

    def forget(self) -> None:
        """Forget which rejections were recorded: the next pass records the current ones again."""
        self._active.clear()

    def record(self, rejected: Mapping[str, RejectedIngress], served: Collection[str]) -> None:
        """Record new rejections, and acceptance of the rejected Ingresses that are served again.

        A 4xx answer is logged and the occurrence counted as recorded (it would fail again);
        other errors propagate, and the unrecorded occurrences are retried next pass.
        """
        for ref, item in sorted(rejected.items()):
            message = rejection_message(item)
            if self._active.get(ref) != message:
                self._emit(_Occurrence(ref, "Warning", "Rejected", message))
                self._active[ref] = message
        for ref in sorted(set(self._active) - set(rejected)):
            if ref in served:
                self._emit(_Occurrence(ref, "Normal", "Accepted", ACCEPTED_MESSAGE))
            del self._active[ref]
        for ref in set(self._counts) - set(rejected) - set(served):  # gone, or not ours any more
            del self._counts[ref]

    def _emit(self, occurrence: _Occurrence) -> None:
        try:
            self._emit_or_raise(occurrence)
        except ApiException as exc:
            if worth_retrying(exc):
                raise
            logger.warning(
                "recording Event %s on Ingress %s failed: %s %s",
                occurrence.reason,
                occurrence.ref,
                exc.status,
                exc.reason,
            )

    def _emit_or_raise(self, occurrence: _Occurrence) -> None:
        namespace, _, name = occurrence.ref.partition("/")
        ingress = read_ingress(self.networking, namespace, name, self.request_timeout)
        if ingress is None:  # deleted meanwhile: nothing to attach the Event to
            return
        meta = ingress.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        event = event_name(name, uid, occurrence.event_type, occurrence.reason, occurrence.message)
        now = datetime.now(UTC).replace(microsecond=0)
        counts = self._counts.setdefault(occurrence.ref, {})
        count = counts.get(event)
        if count is None or self._refresh(namespace, event, count + 1, now) is None:
            counts[event] = self._create(occurrence, ingress, event, now)
        else:
            counts[event] = count + 1
        logger.info("Event %s %s on Ingress %s", occurrence.event_type, occurrence.reason, occurrence.ref)

    def _create(self, occurrence: _Occurrence, ingress: dict[str, Any], event: str, now: datetime) -> int:
        """Create the Event; if it exists already (an earlier leader or run), count this occurrence. Its count."""
        namespace, _, name = occurrence.ref.partition("/")
        meta = ingress.get("metadata") or {}
        body = CoreV1Event(
            api_version="v1",
            kind="Event",
            metadata=V1ObjectMeta(name=event, namespace=namespace),
            involved_object=V1ObjectReference(
                api_version="networking.k8s.io/v1",
                kind="Ingress",
                namespace=namespace,
                name=name,
                uid=meta.get("uid") or None,
                resource_version=meta.get("resourceVersion") or None,
            ),
            type=occurrence.event_type,
            reason=occurrence.reason,
            message=occurrence.message,
            source=V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self.instance,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(
                namespace, body, _preload_content=False, _request_timeout=self.request_timeout
            )
            return 1
        except ApiException as exc:
            if exc.status != 409:
                raise
        # The Event exists (an earlier leader or run recorded it): refresh it, which answers
        # its count (RBAC grants patch on Events, not get), then count this occurrence.
        previous = (self._refresh(namespace, event, None, now) or {}).get("count")
        count = (previous if isinstance(previous, int) and previous > 0 else 1) + 1
        self._refresh(namespace, event, count, now)
        return count

    def _refresh(self, namespace: str, event: str, count: int | None, now: datetime) -> dict[str, Any] | None:
        """Patch an existing Event's lastTimestamp (and count); the Event, or None when it is gone."""
        patch: dict[str, Any] = {"lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if count is not None:
            patch["count"] = count
        try:
            response = self.core.patch_namespaced_event(
                event, namespace, patch, _preload_content=False, _request_timeout=self.request_timeout
            )
        except ApiException as exc:
            if not not_found(exc):  # gone when the API server's event TTL passed: create it again
                raise
            return None
        return json_object(response)
