"""A proxy app over a real route table and a real transport, in the test's event loop.

The table is built from manifest objects exactly as the gateway builds it (balancers,
route timeouts and policies from annotations); requests go in through
``httpx.ASGITransport`` and out over real sockets to real upstream servers. Retries,
ejections and pool statistics can then be read directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gateway_core.manifests import build_snapshot
from gateway_core.messages import Endpoint
from gateway_core.metrics import GatewayMetrics
from gateway_core.pipeline import Pipeline
from gateway_core.plugin_api import PluginSpec
from gateway_core.proxy import ProxyApp
from gateway_core.routing import BuildOptions, build_table
from gateway_core.routing.table import Route, TableHolder
from gateway_core.testing import ingress, path, pooled_service
from gateway_core.transport.balancing import Balancers
from gateway_core.transport.base import Transport
from gateway_core.transport.endpoint_state import EndpointStates
from gateway_core.transport.httpx_transport import HttpxTransport
from gateway_core.transport.pool import ConnectionPool

HOST = "api.test"


def policy_annotations(**policies: Mapping[str, Any]) -> dict[str, str]:
    """``retries={...}, timeouts={...}, outlier_detection={...}`` as Ingress annotations."""
    return {f"meta-native.io/{name.replace('_', '-')}": json.dumps(value) for name, value in policies.items()}


def api_objects(ports: Sequence[int], **policies: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Service ``api`` over ``ports`` on 127.0.0.1, routed for host ``api.test`` with ``policies``."""
    return [
        *pooled_service("api", ports),
        ingress("api", rules=[(HOST, [path("/", "api")])], annotations=policy_annotations(**policies)),
    ]


def make_transport(kind: str) -> Transport:
    return HttpxTransport() if kind == "httpx" else ConnectionPool()


class Harness:
    """The gateway's request path without its server: table, pipeline, proxy app, metrics."""

    def __init__(
        self,
        objects: Sequence[dict[str, Any]],
        *,
        transport: str = "pool",
        specs: Mapping[str, PluginSpec[Any]] | None = None,
    ) -> None:
        self.states = EndpointStates()
        self.metrics = GatewayMetrics(include_default=False)
        self.transport = make_transport(transport)
        options = BuildOptions(specs=dict(specs or {}), balancer_factory=Balancers(self.states))
        snapshot = build_snapshot((f"doc-{index}", item) for index, item in enumerate(objects))
        table = build_table(snapshot, options)
        assert not table.rejected, table.rejected
        self.tables = TableHolder()
        self.tables.publish(table)
        self.pipeline = Pipeline(self.transport, endpoints=self.states, counters=self.metrics)
        self.app = ProxyApp(tables=self.tables, pipeline=self.pipeline, metrics=self.metrics)
        asgi: Any = self.app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=f"http://{HOST}", timeout=30)

    @property
    def route(self) -> Route:
        return self.tables.current.routes[0]

    def retries(self, reason: str | None = None) -> float:
        """Retries counted on the route (of ``reason``, or all)."""
        return self._sum("gateway_upstream_retries", "reason", reason)

    def ejections(self) -> float:
        return self._sum("gateway_upstream_ejections", None, None)

    def _sum(self, family: str, label: str | None, value: str | None) -> float:
        total = 0.0
        for metric in self.metrics.registry.collect():
            if metric.name != family:
                continue
            for sample in metric.samples:
                if sample.name.endswith("_total") and (
                    label is None or value is None or sample.labels.get(label) == value
                ):
                    total += sample.value
        return total

    def outstanding(self) -> dict[Endpoint, int]:
        """Tries whose response has not ended, per endpoint used (all 0 when nothing is in flight)."""
        return {endpoint: self.states.get(endpoint).outstanding for endpoint in self.route.spec.backend.endpoints}

    def active_connections(self) -> int:
        return sum(stats.active for stats in self.transport.stats().values())

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.transport.aclose()
