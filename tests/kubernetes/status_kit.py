"""Shared by the leader-election, status and Event tests: fast settings, real tables, waiting.

Tables are built by the real table builder from the same object dicts the tests create in
kmock, so the controller sees exactly what a gateway serving those objects would hand it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from kmock_server import KmockCluster

from gateway_core.manifests import build_snapshot
from gateway_core.routing import BuildOptions, build_table
from gateway_core.routing.table import RouteTable
from gateway_core.settings import KubernetesSettings
from gateway_core.testing import ingress, path, plugin_annotations, routed_service
from gateway_core.transport.balancing import round_robin

OPTIONS = BuildOptions(specs={}, balancer_factory=round_robin)
"""No plugins installed: an Ingress binding one is rejected ("unknown plugin")."""

FAST: dict[str, Any] = {
    "lease_namespace": "default",
    "lease_duration": 1.0,
    "renew_deadline": 0.5,
    "retry_period": 0.1,
    "backoff_max": 0.5,
}
"""Election timings short enough for tests (the defaults are 15 s / 10 s / 2 s)."""


def settings(lease_name: str, **overrides: Any) -> KubernetesSettings:
    """Kubernetes settings with fast election timings, status and Events on."""
    return KubernetesSettings(**{**FAST, "lease_name": lease_name, **overrides})


_names = itertools.count(1)


def shared_cluster() -> Any:
    """A module-scoped ``cluster`` fixture: one kmock process for a test module.

    Tests sharing it keep apart by :func:`unique` namespaces and Lease names (starting a
    kmock per test would cost more than most of these tests take).
    """

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmockCluster]:
        kube = KmockCluster(tmp_path_factory.mktemp("kmock")).start()
        yield kube
        kube.stop()

    return cluster


def unique(prefix: str) -> str:
    """A name no other test of this session uses: ``prefix-N``."""
    return f"{prefix}-{next(_names)}"


def served_app(name: str, namespace: str, *, host: str = "app.local") -> list[dict[str, Any]]:
    """A Service with an endpoint and an Ingress routing ``host`` to it: served."""
    return [
        *routed_service(f"{name}-svc", 8080, namespace=namespace),
        ingress(name, rules=[(host, [path("/", f"{name}-svc")])], namespace=namespace),
    ]


def rejected_app(name: str, namespace: str, *, host: str = "broken.local") -> list[dict[str, Any]]:
    """Like :func:`served_app`, but the Ingress binds a plugin that is not installed: rejected."""
    objects = served_app(name, namespace, host=host)
    objects[-1]["metadata"]["annotations"] = plugin_annotations({"no-such-plugin": None})
    return objects


def table_of(objects: Iterable[dict[str, Any]], previous: RouteTable | None = None) -> RouteTable:
    """The route table the gateway builds from ``objects`` (after ``previous``)."""
    return build_table(build_snapshot([("cluster", obj) for obj in objects]), OPTIONS, previous)


def load_balancer(kube: KmockCluster, namespace: str, name: str) -> list[dict[str, Any]] | None:
    """``.status.loadBalancer.ingress`` of Ingress ``namespace/name`` as stored (None: absent)."""
    stored = kube.get("Ingress", name, namespace=namespace)
    assert stored is not None, f"Ingress {name} does not exist"
    found: list[dict[str, Any]] | None = ((stored.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    return found


def lease_spec(kube: KmockCluster, name: str) -> dict[str, Any]:
    """The stored Lease ``default/name``'s spec ({} when absent)."""
    lease = kube.get("Lease", name)
    return dict((lease or {}).get("spec") or {})


async def eventually(predicate: Callable[[], bool], *, within: float = 5.0, message: str = "condition") -> None:
    """Poll ``predicate`` (in a thread: it may call kmock) until true, without blocking the loop."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within:g}s waiting for {message}")
