"""Two gateways' status controllers share one Lease: one writes, and a stop hands over at once."""

from __future__ import annotations

from kmock_server import KmockCluster, RecordedRequest
from status_kit import FAST, eventually, load_balancer, served_app, settings, shared_cluster, table_of, unique

from gateway_core.providers.kubernetes.calls import parse_time
from gateway_core.providers.kubernetes.controller import StatusController

cluster = shared_cluster()

ADDRESS = [{"ip": "192.0.2.10"}]


def step(request: RecordedRequest) -> str | None:
    """``clear`` for a write removing an Ingress's status, ``release`` for one freeing the Lease."""
    if request.action != "update" or not isinstance(request.data, dict):
        return None
    if request.resource == "networking.k8s.io/v1/ingresses" and request.data == {
        "status": {"loadBalancer": {"ingress": None}}
    }:
        return "clear"
    spec = request.data.get("spec") or {}
    if (
        request.resource == "coordination.k8s.io/v1/leases"
        and "holderIdentity" in spec
        and spec["holderIdentity"] is None
    ):
        return "release"
    return None


async def test_one_of_two_controllers_leads_and_a_stop_hands_over_at_once(cluster: KmockCluster) -> None:
    namespace, lease = unique("ns"), unique("lease")
    objects = served_app("app", namespace)
    cluster.create_all(objects)
    table = table_of(objects)
    options = settings(lease, lease_duration=2.0, renew_deadline=1.0, publish_status_address=["192.0.2.10"])
    first = StatusController(cluster.api, options, identity="gateway-a")
    second = StatusController(cluster.api, options, identity="gateway-b")
    await first.start()
    await eventually(lambda: first.leading, message="the first controller to lead")
    await second.start()
    try:
        for controller in (first, second):
            await controller.table_built(table)
        await eventually(lambda: load_balancer(cluster, namespace, "app") == ADDRESS, message="status written")
        mark = cluster.request_count()
        await eventually(
            lambda: len(cluster.requests("Lease", action="fetch", since=mark)) >= 6, message="both to compete a while"
        )
        assert first.leading
        assert not second.leading
        assert len(cluster.requests("Ingress", action="update", namespace=namespace)) == 1, "only the leader wrote"

        mark = cluster.request_count()
        await first.stop()
        released = parse_time(cluster.get("Lease", lease)["spec"]["renewTime"])  # type: ignore[index]
        await eventually(lambda: second.leading, message="the second controller to take over")
        acquired = parse_time(cluster.get("Lease", lease)["spec"]["acquireTime"])  # type: ignore[index]
        assert released is not None
        assert acquired is not None
        assert (acquired - released).total_seconds() < FAST["lease_duration"], "taken over before expiry"
        # The first cleared the status before releasing; the new leader writes it again.
        await eventually(lambda: load_balancer(cluster, namespace, "app") == ADDRESS, message="status rewritten")
        writes = [request.data for request in cluster.requests("Ingress", action="update", since=mark)]
        assert writes == [
            {"status": {"loadBalancer": {"ingress": None}}},
            {"status": {"loadBalancer": {"ingress": ADDRESS}}},
        ]
        # Cleared before released: once released, the new leader's write must not be undone.
        steps = [step(request) for request in cluster.requests(since=mark)]
        assert [name for name in steps if name] == ["clear", "release"]
    finally:
        await first.stop()
        await second.stop()


async def test_without_leader_election_a_controller_leads_at_once(cluster: KmockCluster) -> None:
    lease = unique("lease")
    controller = StatusController(cluster.api, settings(lease, leader_election=False), identity="solo")
    leading_before_start = controller.leading
    mark = cluster.request_count()
    await controller.start()
    try:
        assert not leading_before_start
        assert controller.leading
    finally:
        await controller.stop()
    assert cluster.requests("Lease", since=mark) == []
    assert cluster.get("Lease", lease) is None
