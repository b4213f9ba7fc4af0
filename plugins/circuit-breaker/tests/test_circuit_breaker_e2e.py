"""circuit-breaker in real ``gateway run`` processes, alone and sharing state through Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    RedisServer,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)


def _manifests(directory: Path, backend: RecordingUpstream, config: dict[str, Any]) -> None:
    write_manifests(
        directory,
        [
            *routed_service("api", backend.port),
            ingress(
                "api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations({"circuit-breaker": config})
            ),
        ],
    )


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.json()["error"] == "circuit_open"


@pytest.mark.e2e
def test_gateway_run_shares_an_open_breaker_with_every_worker_of_another_gateway(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    gateway_process: Callable[..., GatewayProcess],
    redis_server: RedisServer,
) -> None:
    backend = upstream("api", status=503)
    _manifests(manifests_dir, backend, {"fail_max": 3, "reset_timeout": 60, "redis": redis_server.url})
    write_manifests(
        manifests_dir,
        [
            ingress(
                "leaky",
                rules=[("leaky.test", [path("/", "api")])],
                annotations=plugin_annotations({"circuit-breaker": {"redis": "redis://:hunter2@redis:6379/0"}}),
            )
        ],
        filename="leaky.yaml",
    )
    first = gateway_process(manifests_dir, wait_ready=False)
    second = gateway_process(manifests_dir, workers=2, wait_ready=False)
    first.wait_ready()
    second.wait_ready()
    with httpx.Client(base_url=first.url) as client:
        assert [client.get("/").status_code for _ in range(3)] == [503] * 3
        refused = client.get("/")
        leaky = client.get("/", headers={"Host": "leaky.test"})
    assert _refused(refused)
    assert refused.headers["retry-after"] in {"59", "60"}
    answers = []
    for _ in range(8):  # new connections: both workers of the second gateway answer some
        with httpx.Client(base_url=second.url) as client:
            answers.append(client.get("/"))
    assert all(_refused(response) for response in answers)
    assert len(backend.requests) == 3
    assert b"pybreaker:state" in redis_server.command("KEYS", "meta-native:circuit-breaker:default/api:*")
    assert "circuit breaker default/api opened (last failure: status 503)" in first.log()
    # A password in the URL rejects that Ingress alone, and the reason does not repeat it.
    assert (leaky.status_code, leaky.json()["error"]) == (503, "route_unavailable")
    reasons = json.dumps(httpx.get(f"{first.admin_url}/routes").json()["rejected"])
    assert "redis_secret" in reasons
    assert "hunter2" not in reasons
