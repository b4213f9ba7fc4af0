"""The same objects give the same route table from the cluster as from files on disk.

One set of objects — hosts, wildcards, Exact and Prefix paths, a conflict the older Ingress
wins, a default backend, named and numbered ports, unready endpoints, a missing Service,
another class's Ingress, a rejected plugin, a Secret a plugin reads, a Secret nobody reads,
an object that does not parse, two namespaces — is written to a manifests directory for
``gateway run --manifests`` and created through the API for ``gateway run --kubernetes``;
both ``/routes`` tables must match once the per-build fields are set aside.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kmock_server import KmockCluster

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    endpoint_slice,
    ingress,
    path,
    plugin_annotations,
    secret,
    service,
    write_manifests,
)


def objects(api_port: int, web_port: int) -> list[dict[str, Any]]:
    classes = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": controller},
        }
        for name, controller in (("meta-native", "meta-native.io/gateway"), ("other", "example.com/other"))
    ]
    wild = ingress("wild", rules=[("*.example.org", [path("/", "web", port=8080)])], created="2024-01-03T00:00:00Z")
    tls = ingress("tls", rules=[("secure.example", [path("/", "web", port=8080)])], created="2024-01-04T00:00:00Z")
    tls["spec"]["tls"] = [{"hosts": ["secure.example"], "secretName": "secure-cert"}]
    broken = ingress("broken", rules=[("shop.example", [path("/x", "api", path_type="Sometimes")])])
    weird = service("weird")
    weird["spec"]["ports"][0]["port"] = 70000
    return [
        *classes,
        service("api"),
        endpoint_slice("api", ["127.0.0.1", ("127.0.0.2", False)], port=api_port),
        service("web", port=8080, port_name=None),
        endpoint_slice("web", ["127.0.0.1"], port=web_port, port_name=None),
        service("api", namespace="team"),
        endpoint_slice("api", ["127.0.0.1"], port=api_port, namespace="team"),
        secret("keys", {"alice": "alice-key"}),
        secret("secure-cert", {"tls.crt": "cert", "tls.key": "key"}),
        secret("unrelated", {"password": "hunter2"}),
        ingress(
            "shop",
            rules=[("shop.example", [path("/cart", "api"), path("/checkout", "api", path_type="Exact")])],
            created="2024-01-01T00:00:00Z",
        ),
        ingress(
            "shop-late",
            rules=[("shop.example", [path("/cart", "web", port=8080), path("/late", "web", port=8080)])],
            created="2024-02-01T00:00:00Z",
        ),
        wild,
        tls,
        ingress("fallback", default_backend="api", created="2024-01-05T00:00:00Z"),
        ingress(
            "foreign",
            rules=[("other.example", [path("/", "api")])],
            ingress_class="other",
            created="2024-01-06T00:00:00Z",
        ),
        ingress(
            "rejected",
            rules=[("bad.example", [path("/", "api")])],
            annotations=plugin_annotations({"no-such-plugin": None}),
            created="2024-01-07T00:00:00Z",
        ),
        ingress(
            "protected",
            rules=[("keys.example", [path("/", "api")])],
            annotations=plugin_annotations({"key-auth": {"secret": "keys"}}),
            created="2024-01-08T00:00:00Z",
        ),
        ingress("lost", rules=[("lost.example", [path("/", "nowhere")])], created="2024-01-09T00:00:00Z"),
        ingress(
            "team-app",
            namespace="team",
            rules=[("team.example", [path("/", "api")])],
            created="2024-01-10T00:00:00Z",
        ),
        broken,
        weird,
    ]


def normalised(table: dict[str, Any]) -> dict[str, Any]:
    """``/routes`` without what differs between two builds (and the problems' file names)."""
    return {
        "routes": sorted(table["routes"], key=lambda route: route["id"]),
        "rejected": sorted(table["rejected"], key=lambda item: item["ingress"]),
        "conflicts": sorted(table["conflicts"], key=lambda item: item["route"]),
        "problems": sorted(problem["message"] for problem in table["problems"]),
        "ignored": sorted(table["ignored"]),
        "stripped_request_headers": table["stripped_request_headers"],
    }


def test_the_cluster_and_the_files_give_the_same_route_table(
    kube: KmockCluster,
    kube_gateway: Callable[..., GatewayProcess],
    gateway_process: Callable[..., GatewayProcess],
    upstream: Callable[..., RecordingUpstream],
    tmp_path: Path,
) -> None:
    manifests = objects(upstream("api").port, upstream("web").port)
    write_manifests(tmp_path / "manifests", manifests)
    for obj in manifests:
        kube.create(obj)
    from_files = gateway_process(tmp_path / "manifests")
    from_cluster = kube_gateway()

    files_table = httpx.get(from_files.admin_url + "/routes", timeout=5).json()
    cluster_table = httpx.get(from_cluster.admin_url + "/routes", timeout=5).json()
    assert normalised(cluster_table) == normalised(files_table)
    # The set is not trivial: every kind of outcome is in it.
    table = normalised(files_table)
    assert len(table["routes"]) >= 10
    assert [item["ingress"] for item in table["rejected"]] == ["default/broken", "default/rejected"]
    assert table["conflicts"]
    assert table["ignored"]
    assert any("pathType" in reason for item in table["rejected"] for reason in item["reasons"])
    assert any("Service weird" in problem for problem in table["problems"])
    assert any(route["backend"]["problem"] for route in table["routes"])
    assert table["stripped_request_headers"]  # key-auth bound: it owns the identity header
