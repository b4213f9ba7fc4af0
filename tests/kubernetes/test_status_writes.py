"""Ingress status: the publish address in ``.status.loadBalancer.ingress`` of served Ingresses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kmock_server import KmockCluster
from status_kit import (
    eventually,
    load_balancer,
    rejected_app,
    served_app,
    settings,
    shared_cluster,
    table_of,
    unique,
)

from gateway_core.providers.kubernetes.calls import micro_time
from gateway_core.providers.kubernetes.controller import StatusController, served_ingresses
from gateway_core.providers.kubernetes.status import address_entry, canonical, service_address
from gateway_core.testing import ingress, path, service

cluster = shared_cluster()


@pytest.mark.parametrize(
    ("service_fields", "expected"),
    [
        pytest.param(
            {
                "status": {
                    "loadBalancer": {"ingress": [{"ip": "203.0.113.9", "ipMode": "VIP"}, {"hostname": "lb.example"}]}
                },
                "spec": {"clusterIP": "10.96.0.5"},
            },
            (("hostname", "lb.example"), ("ip", "203.0.113.9")),
            id="load-balancer",
        ),
        pytest.param(
            {"spec": {"externalIPs": ["198.51.100.2", "198.51.100.1"], "clusterIP": "10.96.0.5"}},
            (("ip", "198.51.100.1"), ("ip", "198.51.100.2")),
            id="external-ips",
        ),
        pytest.param(
            {"spec": {"type": "ExternalName", "externalName": "gw.example"}}, (("hostname", "gw.example"),), id="name"
        ),
        pytest.param({"spec": {"clusterIP": "10.96.0.5"}}, (("ip", "10.96.0.5"),), id="cluster-ip"),
        pytest.param({"spec": {"clusterIP": "None"}}, (), id="headless"),
        pytest.param({"status": {"loadBalancer": {"ingress": "garbage"}}, "spec": []}, (), id="malformed"),
    ],
)
def test_the_publish_service_address_is_its_most_public_one(
    service_fields: dict[str, Any], expected: tuple[tuple[str, str], ...]
) -> None:
    assert service_address(service_fields) == expected


def test_addresses_are_ips_or_host_names_and_compare_in_one_form() -> None:
    assert address_entry("2001:db8::1") == ("ip", "2001:db8::1")
    assert address_entry("gw.example.com") == ("hostname", "gw.example.com")
    assert canonical([{"ip": "10.0.0.2", "ports": [{"port": 80}]}, {"ip": "10.0.0.1"}, {"weird": 1}, "x"]) == (
        ("ip", "10.0.0.1"),
        ("ip", "10.0.0.2"),
    )


def test_served_ingresses_are_those_with_routes_not_answering_503() -> None:
    table = table_of([*served_app("app", "ns"), *rejected_app("broken", "ns")])
    assert served_ingresses(table) == {"ns/app"}
    assert set(table.rejected) == {"ns/broken"}
    # A rejected new version of a good Ingress: its last good version keeps serving.
    relapsed = table_of(rejected_app("app", "ns"), table_of(served_app("app", "ns")))
    assert relapsed.rejected["ns/app"].serving_last_good
    assert served_ingresses(relapsed) == {"ns/app"}


def status_writes(kube: KmockCluster, namespace: str, since: int = 0) -> list[tuple[str | None, Any]]:
    """(Ingress name, body) of every status write in ``namespace``."""
    return [(r.name, r.data) for r in kube.requests("Ingress", action="update", namespace=namespace, since=since)]


async def test_the_leader_writes_the_address_into_served_ingresses_and_clears_it_on_stop(
    cluster: KmockCluster,
) -> None:
    namespace = unique("ns")
    other_class = ingress("elsewhere", rules=[("x.local", [path("/", "app-svc")])], ingress_class="nginx")
    other_class["metadata"]["namespace"] = namespace
    objects = [*served_app("app", namespace), *rejected_app("broken", namespace, host="b.local"), other_class]
    cluster.create_all(objects)
    options = settings(unique("lease"), leader_election=False, publish_status_address=["192.0.2.1", "gw.example"])
    controller = StatusController(cluster.api, options, identity="solo")
    await controller.start()
    try:
        await controller.table_built(table_of(objects))
        expected = [{"hostname": "gw.example"}, {"ip": "192.0.2.1"}]
        await eventually(lambda: load_balancer(cluster, namespace, "app") == expected, message="status of app")
    finally:
        await controller.stop()
    assert load_balancer(cluster, namespace, "app") is None, "cleared on shutdown"
    assert status_writes(cluster, namespace) == [
        ("app", {"status": {"loadBalancer": {"ingress": expected}}}),
        ("app", {"status": {"loadBalancer": {"ingress": None}}}),
    ], "the rejected Ingress and the other class's are never touched"


async def test_status_is_written_only_when_it_differs_and_follows_the_publish_service(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    preset = served_app("preset", namespace, host="preset.local")
    preset[-1]["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}}  # already right
    objects = [*served_app("app", namespace), *preset]
    cluster.create_all(objects)
    cluster.create(service("gateway", namespace=namespace))
    cluster.patch(
        "Service",
        "gateway",
        {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}}},
        namespace=namespace,
        subresource="status",
    )
    options = settings(unique("lease"), leader_election=False, publish_service=f"{namespace}/gateway")
    controller = StatusController(cluster.api, options, identity="solo")
    table = table_of(objects)

    def service_reads(since: int) -> int:
        return len(cluster.requests("Service", action="fetch", namespace=namespace, since=since))

    await controller.start()
    try:
        await controller.table_built(table)
        await eventually(lambda: load_balancer(cluster, namespace, "app") == [{"ip": "203.0.113.5"}])
        assert status_writes(cluster, namespace) == [
            ("app", {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}}})
        ], "preset already had the address"

        mark = cluster.request_count()
        for _ in range(3):
            await controller.table_built(table)
        await eventually(lambda: service_reads(mark) >= 1, message="a pass over the same table")
        assert status_writes(cluster, namespace, mark) == [], "nothing changed, nothing written"

        cluster.patch(
            "Service",
            "gateway",
            {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}},
            namespace=namespace,
            subresource="status",
        )
        await controller.table_built(table)
        moved = [{"hostname": "lb.example"}]
        await eventually(lambda: load_balancer(cluster, namespace, "app") == moved, message="the new address")
        await eventually(lambda: load_balancer(cluster, namespace, "preset") == moved, message="the new address")
    finally:
        await controller.stop()


async def test_an_ingress_no_longer_served_loses_the_address_unless_another_owns_it(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    objects = [*served_app("app", namespace), *served_app("taken", namespace, host="taken.local")]
    cluster.create_all(objects)
    options = settings(
        unique("lease"), leader_election=False, publish_status_address=["192.0.2.1"], update_status_on_shutdown=False
    )
    controller = StatusController(cluster.api, options, identity="solo")
    await controller.start()
    try:
        await controller.table_built(table_of(objects))
        await eventually(lambda: load_balancer(cluster, namespace, "app") == [{"ip": "192.0.2.1"}])
        await eventually(lambda: load_balancer(cluster, namespace, "taken") == [{"ip": "192.0.2.1"}])
        # "taken" moves to another controller, which writes its own address; both leave our table.
        cluster.patch(
            "Ingress",
            "taken",
            {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}},
            namespace=namespace,
            subresource="status",
        )
        await controller.table_built(table_of(objects[:2] + objects[3:5]))  # the Services, no Ingress
        await eventually(lambda: load_balancer(cluster, namespace, "app") is None, message="app's status cleared")
    finally:
        await controller.stop()
    assert load_balancer(cluster, namespace, "taken") == [{"ip": "198.51.100.7"}]


async def test_a_follower_writes_nothing_until_it_leads(cluster: KmockCluster) -> None:
    namespace, lease = unique("ns"), unique("lease")
    objects = served_app("app", namespace)
    cluster.create_all(objects)
    holder = {"holderIdentity": "other-gateway", "leaseDurationSeconds": 30, "renewTime": micro_time(datetime.now(UTC))}
    cluster.create(
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": lease}, "spec": holder}
    )
    controller = StatusController(
        cluster.api, settings(lease, publish_status_address=["192.0.2.1"]), identity="follower"
    )
    await controller.start()
    try:
        mark = cluster.request_count()
        await controller.table_built(table_of(objects))
        await eventually(lambda: len(cluster.requests("Lease", action="fetch", since=mark)) >= 3)
        assert not controller.leading
        assert status_writes(cluster, namespace) == []
        cluster.patch("Lease", lease, {"spec": {"holderIdentity": None}})  # the other gateway released it
        await eventually(lambda: load_balancer(cluster, namespace, "app") == [{"ip": "192.0.2.1"}])
        assert controller.leading
    finally:
        await controller.stop()


async def test_a_failed_pass_is_retried_and_never_reaches_the_caller(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    objects = served_app("app", namespace)
    cluster.create_all(objects)
    controller = StatusController(
        cluster.api,
        settings(unique("lease"), leader_election=False, publish_status_address=["192.0.2.1"], backoff_max=0.1),
        identity="solo",
    )
    await controller.start()
    try:
        cluster.fail_next("Ingress", action="update", status=503, count=2)
        await controller.table_built(table_of(objects))  # returns at once, whatever the API says
        await eventually(lambda: load_balancer(cluster, namespace, "app") == [{"ip": "192.0.2.1"}])
        assert len(status_writes(cluster, namespace)) == 3, "two failed writes, then the one that stuck"
    finally:
        await controller.stop()
