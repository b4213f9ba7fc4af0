"""A real ``gateway run --kubernetes`` process leads, writes Ingress status and Events to kmock,
and on SIGTERM clears the status and releases its Lease."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from kmock_server import KmockCluster, RecordedRequest
from status_kit import FAST, load_balancer

from gateway_core.testing import GatewayProcess, RecordingUpstream, ingress, path, plugin_annotations, routed_service
from gateway_core.testing import wait_until as wait

ADDRESS = [{"ip": "192.0.2.50"}]
RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def granted() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every rule in deploy/rbac.yaml (names aside)."""
    grants: set[tuple[str, str, str]] = set()
    for role in yaml.safe_load_all(RBAC.read_text()):
        for rule in (role or {}).get("rules", ()):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    grants.update((group, resource, verb) for verb in rule["verbs"])
    return grants


def needed(request: RecordedRequest) -> tuple[str, str, str]:
    """The (API group, resource, verb) RBAC must grant for ``request``."""
    assert request.resource is not None
    *group_version, plural = request.resource.split("/")
    group = group_version[0] if len(group_version) == 2 else ""
    resource = f"{plural}/{request.subresource}" if request.subresource else plural
    verb = VERBS[request.method]
    if request.method == "GET" and request.name is None:
        verb = "watch" if request.params.get("watch") in ("true", "1") else "list"
    return (group, resource, verb)


def events(kube: KmockCluster, reason: str) -> list[dict[str, Any]]:
    return [event for event in kube.list_objects("Event", namespace="default") if event["reason"] == reason]


def test_the_gateway_writes_status_and_events_and_cleans_up_on_shutdown(
    kube: KmockCluster,
    kube_gateway: Callable[..., GatewayProcess],
    upstream: Callable[..., RecordingUpstream],
) -> None:
    backend = upstream("api")
    kube.create_all(routed_service("api", backend.port))
    kube.create(ingress("app", rules=[("app.local", [path("/", "api")])]))
    kube.create(
        ingress(
            "broken",
            rules=[("broken.local", [path("/", "api")])],
            annotations=plugin_annotations({"no-such-plugin": None}),
        )
    )
    settings = {
        **FAST,
        "lease_name": "gateway-e2e",
        "leader_election": True,
        "update_status": True,
        "events": True,
        "publish_status_address": ["192.0.2.50"],
    }
    gateway = kube_gateway(settings=settings, env={"POD_NAME": "gateway-e2e"})
    assert gateway.process is not None
    identity = f"gateway-e2e-{gateway.process.pid}"

    assert httpx.get(f"{gateway.url}/hello", headers={"Host": "app.local"}).status_code == 200
    wait(lambda: load_balancer(kube, "default", "app") == ADDRESS, message=f"status of app\n{gateway.log()}")
    lease = kube.get("Lease", "gateway-e2e")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == identity
    wait(lambda: len(events(kube, "Rejected")) == 1, message="the Warning Event")
    (warning,) = events(kube, "Rejected")
    assert warning["type"] == "Warning"
    assert "'no-such-plugin' is not installed" in warning["message"]
    assert warning["involvedObject"]["name"] == "broken"
    assert warning["reportingInstance"] == identity
    assert load_balancer(kube, "default", "broken") is None, "a rejected Ingress is not served"

    kube.patch("Ingress", "broken", {"metadata": {"annotations": None}})  # fixed
    wait(lambda: len(events(kube, "Accepted")) == 1, message="the Accepted Event")
    wait(lambda: load_balancer(kube, "default", "broken") == ADDRESS, message="status of the fixed Ingress")
    assert httpx.get(f"{gateway.url}/hello", headers={"Host": "broken.local"}).status_code == 200

    assert gateway.stop() == 0
    assert load_balancer(kube, "default", "app") is None
    assert load_balancer(kube, "default", "broken") is None
    released = kube.get("Lease", "gateway-e2e")
    assert released is not None
    assert "holderIdentity" not in released["spec"]

    sent = [r for r in kube.requests() if r.headers.get("User-Agent", "").startswith("meta-native-gateway/")]
    assert {needed(r)[2] for r in sent} >= {"list", "watch", "get", "create", "patch"}
    assert {needed(r) for r in sent} <= granted(), "every call the gateway made is allowed by deploy/rbac.yaml"
