"""A plugin's metric in prometheus_client's default registry reaches /metrics with one worker.

(With several workers, multiprocess mode collects every metric; tests of the rate-limit
plugin cover that path.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client import Counter

from gateway_core.testing import InProcessGateway, RecordingUpstream, ingress, path, routed_service, write_manifests

PLUGIN_COUNTER = Counter("test_plugin_side_effects", "A counter a plugin registers the usual way.", ["kind"])


def test_default_registry_metrics_are_served_next_to_the_gateways(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> None:
    api = upstream("api")
    write_manifests(
        manifests_dir, [*routed_service("api", api.port), ingress("api", rules=[(None, [path("/", "api")])])]
    )
    gateway = in_process_gateway(manifests=manifests_dir, load_entry_points=False)
    PLUGIN_COUNTER.labels(kind="seen").inc(3)
    assert httpx.get(gateway.url + "/").status_code == 200
    text = httpx.get(gateway.admin_url + "/metrics").text
    assert 'test_plugin_side_effects_total{kind="seen"} 3.0' in text
    assert 'gateway_requests_total{route="default/api:*:Prefix:/",service="default/api",status="200"} 1.0' in text
    assert text.count("# TYPE gateway_requests_total counter") == 1
