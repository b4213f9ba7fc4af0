"""Events on Ingresses: ``Warning Rejected`` with the reasons, ``Normal Accepted`` after a fix.

Most tests drive :class:`IngressEventRecorder` directly (it is what a controller pass runs, in
a thread) so that "nothing was sent" is exact: the request log of kmock before and after.
"""

from __future__ import annotations

from typing import Any

from kmock_server import KmockCluster
from status_kit import eventually, rejected_app, served_app, settings, shared_cluster, table_of, unique

from gateway_core.providers.kubernetes.controller import StatusController, served_ingresses
from gateway_core.providers.kubernetes.events import (
    ACCEPTED_MESSAGE,
    MESSAGE_LIMIT,
    IngressEventRecorder,
    rejection_message,
    truncate,
)
from gateway_core.routing.table import RejectedIngress, RouteTable

cluster = shared_cluster()

NOT_INSTALLED = "plugin 'no-such-plugin' is not installed (or is disabled)"


def record(recorder: IngressEventRecorder, table: RouteTable) -> None:
    recorder.record(table.rejected, served_ingresses(table))


def events(kube: KmockCluster, namespace: str) -> list[dict[str, Any]]:
    return sorted(kube.list_objects("Event", namespace=namespace), key=lambda event: event["reason"])


def test_messages_are_the_reasons_cut_to_one_kib() -> None:
    assert rejection_message(RejectedIngress("ns/a", ("first", "second"), False)) == "first; second"
    long = truncate("é" * 2000)
    assert len(long.encode()) <= MESSAGE_LIMIT
    assert long.endswith("…")
    assert long.startswith("éé")
    assert truncate("short") == "short"


def test_a_rejected_ingress_gets_one_warning_event_however_often_tables_repeat(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    objects = [*served_app("app", namespace), *rejected_app("broken", namespace)]
    cluster.create_all(objects)
    uid = cluster.get("Ingress", "broken", namespace=namespace)["metadata"]["uid"]  # type: ignore[index]
    recorder = IngressEventRecorder(cluster.api, instance="gateway-0")
    table = table_of(objects)
    record(recorder, table)
    (event,) = events(cluster, namespace)
    assert event["type"] == "Warning"
    assert event["reason"] == "Rejected"
    assert NOT_INSTALLED in event["message"]
    assert event["count"] == 1
    assert event["involvedObject"] == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "namespace": namespace,
        "name": "broken",
        "uid": uid,
        "resourceVersion": cluster.get("Ingress", "broken", namespace=namespace)["metadata"]["resourceVersion"],  # type: ignore[index]
    }
    assert event["reportingInstance"] == "gateway-0"
    assert event["metadata"]["name"].startswith("broken.")

    mark = cluster.request_count()
    for _ in range(3):
        record(recorder, table_of(objects, table))
    assert cluster.requests(since=mark) == [], "the same rejection is not recorded again"


def test_a_fix_is_accepted_and_a_relapse_counts_on_the_same_event(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    broken = rejected_app("app", namespace)
    fixed = served_app("app", namespace)
    cluster.create_all(broken)
    recorder = IngressEventRecorder(cluster.api, instance="gateway-0")
    record(recorder, table_of(broken))
    record(recorder, table_of(fixed))
    accepted, rejected = events(cluster, namespace)
    assert (accepted["type"], accepted["reason"], accepted["message"]) == ("Normal", "Accepted", ACCEPTED_MESSAGE)
    record(recorder, table_of(fixed))  # still fine: nothing new
    record(recorder, table_of(broken))  # broken again, for the same reason
    accepted_again, rejected_again = events(cluster, namespace)
    assert accepted_again == accepted
    assert rejected_again["metadata"]["name"] == rejected["metadata"]["name"]
    assert rejected_again["count"] == 2
    assert rejected_again["firstTimestamp"] == rejected["firstTimestamp"]
    assert rejected_again["lastTimestamp"] >= rejected["lastTimestamp"]


def test_a_different_reason_is_a_new_event(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    objects = rejected_app("app", namespace)
    cluster.create_all(objects)
    recorder = IngressEventRecorder(cluster.api, instance="gateway-0")
    record(recorder, table_of(objects))
    recorder.record({f"{namespace}/app": RejectedIngress(f"{namespace}/app", ("another reason",), False)}, set())
    messages = sorted(event["message"] for event in events(cluster, namespace))
    assert messages == ["another reason", NOT_INSTALLED]


def test_a_new_leader_counts_on_the_existing_event_and_an_expired_one_is_created_again(
    cluster: KmockCluster,
) -> None:
    namespace = unique("ns")
    objects = rejected_app("app", namespace)
    cluster.create_all(objects)
    table = table_of(objects)
    record(IngressEventRecorder(cluster.api, instance="gateway-0"), table)
    successor = IngressEventRecorder(cluster.api, instance="gateway-1")
    record(successor, table)
    (event,) = events(cluster, namespace)
    assert event["count"] == 2, "the successor found the Event by its name and counted"

    cluster.delete("Event", event["metadata"]["name"], namespace=namespace)  # the API server's event TTL
    record(successor, table_of(served_app("app", namespace)))
    record(successor, table)
    rejected = [item for item in events(cluster, namespace) if item["reason"] == "Rejected"]
    assert [item["count"] for item in rejected] == [1]


def test_an_ingress_deleted_meanwhile_gets_no_event(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    recorder = IngressEventRecorder(cluster.api, instance="gateway-0")
    record(recorder, table_of(rejected_app("gone", namespace)))  # never created in the cluster
    assert events(cluster, namespace) == []


async def test_a_burst_of_tables_makes_one_event_through_the_controller(cluster: KmockCluster) -> None:
    namespace = unique("ns")
    objects = [*served_app("app", namespace), *rejected_app("broken", namespace, host="b.local")]
    cluster.create_all(objects)
    controller = StatusController(
        cluster.api, settings(unique("lease"), leader_election=False, update_status=False), identity="solo"
    )
    await controller.start()
    try:
        table = table_of(objects)
        for _ in range(20):
            table = table_of(objects, table)
            await controller.table_built(table)
        await eventually(lambda: len(events(cluster, namespace)) == 1, message="the Warning Event")
        fixed = table_of(served_app("broken", namespace, host="b.local") + objects[:3], table)
        await controller.table_built(fixed)
        await eventually(lambda: len(events(cluster, namespace)) == 2, message="the Accepted Event")
    finally:
        await controller.stop()
    assert [(event["reason"], event["count"]) for event in events(cluster, namespace)] == [
        ("Accepted", 1),
        ("Rejected", 1),
    ]
    assert len(cluster.requests("Event", action="create", namespace=namespace)) == 2
    assert cluster.requests("Event", action="update", namespace=namespace) == []
