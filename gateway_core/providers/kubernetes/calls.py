"""Helpers shared by the writers (Lease, status, Events): raw JSON answers, error classes, times.

The writers read objects as the API server sent them, plain camelCase dicts
(``_preload_content=False``), not as the client's typed models: a field the models refuse
(an odd timestamp, a missing required field) must not stop leader election or status
writes. Merge patches are plain dicts; creates use the typed models.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes.client import ApiException, NetworkingV1Api


def json_object(response: object) -> dict[str, Any]:
    """The JSON object of an undecoded response (``_preload_content=False``); ``{}`` if not an object."""
    if not isinstance(response, urllib3.BaseHTTPResponse):
        return {}
    try:
        found = json.loads(response.data or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def not_found(exc: ApiException) -> bool:
    """The object does not exist (any more)."""
    return bool(exc.status == 404)


def worth_retrying(exc: ApiException) -> bool:
    """A server-side or throttling failure: the same call may succeed later. A 4xx would not."""
    return exc.status is None or exc.status >= 500 or exc.status in (408, 429)


def read_ingress(
    networking: NetworkingV1Api, namespace: str, name: str, timeout: float | tuple[float, float]
) -> dict[str, Any] | None:
    """The Ingress as the API server has it (a raw dict), or None when it does not exist.

    The Ingress itself, not its ``/status``: RBAC grants ``get`` on ingresses only.
    """
    try:
        response = networking.read_namespaced_ingress(name, namespace, _preload_content=False, _request_timeout=timeout)
    except ApiException as exc:
        if not_found(exc):
            return None
        raise
    return json_object(response)


def micro_time(moment: datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime | None:
    """A Kubernetes ``Time`` or ``MicroTime`` as an aware datetime; None when absent or invalid."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
