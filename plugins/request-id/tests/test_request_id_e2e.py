"""request-id through a real ``gateway run`` process with two real upstreams and the access log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    wait_until,
    write_manifests,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.mark.e2e
def test_gateway_run_keeps_generates_echoes_and_logs_ids_on_two_routes(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    orders, search = upstream("orders"), upstream("search")
    log_fields: dict[str, Any] = {"fields": ["host", "status", "request_id"]}
    write_manifests(
        manifests_dir,
        [
            *routed_service("orders", orders.port),
            *routed_service("search", search.port),
            ingress(
                "orders",
                rules=[("orders.test", [path("/", "orders")])],
                annotations=plugin_annotations({"request-id": None, "access-log": log_fields}),
            ),
            ingress(
                "search",
                rules=[("search.test", [path("/", "search")])],
                annotations=plugin_annotations(
                    {
                        "request-id": {"header": "X-Trace-ID", "trust_incoming": False},
                        "access-log": {**log_fields, "request_id_header": "X-Trace-ID"},
                    }
                ),
            ),
        ],
    )
    process = gateway_process(manifests_dir)
    with httpx.Client(base_url=process.url) as client:
        kept = client.get("/o", headers={"Host": "orders.test", "X-Request-ID": "abc-123"})
        made = client.get("/o", headers={"Host": "orders.test", "X-Request-ID": "bad id"})
        replaced = client.get("/s", headers={"Host": "search.test", "X-Trace-ID": "abc-123"})
    assert kept.headers["x-request-id"] == orders.requests[0].headers["x-request-id"] == "abc-123"
    assert UUID4.match(made.headers["x-request-id"])
    assert orders.requests[1].headers["x-request-id"] == made.headers["x-request-id"]
    trace = search.requests[0].headers["x-trace-id"]
    assert UUID4.match(trace)
    assert replaced.headers["x-trace-id"] == trace
    assert "x-request-id" not in replaced.headers

    def entries() -> list[dict[str, Any]]:
        return [json.loads(line) for line in process.log().splitlines() if line.startswith('{"host":')]

    wait_until(lambda: len(entries()) == 3, timeout=5, message=f"three access log lines\n{process.log()}")
    assert [(entry["host"], entry["request_id"]) for entry in entries()] == [
        ("orders.test", "abc-123"),
        ("orders.test", made.headers["x-request-id"]),
        ("search.test", trace),
    ]
    assert "Traceback" not in process.log()
