"""``gateway run --kubernetes`` against kmock: routes follow the API, readiness, recovery.

Every test runs a real gateway process watching a real kmock API server (its own process)
and sends real traffic to real upstreams. kmock's simplifications, and how these tests live
with them: its watch ignores ``resourceVersion`` and replays every object as ADDED (the
provider upserts, and relists after a failure, so that is harmless); it never sends 410 or
an error by itself (the tests cut watches through kmock_emulator's test endpoints); its
resourceVersions are a plain counter. The resourceVersion, bookmark and backoff logic is
covered against a scripted server in test_provider_reflector.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml
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
    wait_until,
)

FOLLOW = 1.0
"""Seconds a change in the cluster may take to reach routing (the issue's bound)."""


def status(gateway: GatewayProcess, url_path: str, host: str = "app.example") -> int:
    return httpx.get(gateway.url + url_path, headers={"host": host}, timeout=5).status_code


def answered_by(gateway: GatewayProcess, url_path: str, host: str = "app.example") -> str | None:
    response = httpx.get(gateway.url + url_path, headers={"host": host}, timeout=5)
    return str(response.json()["upstream"]) if response.status_code == 200 else None


def routes(gateway: GatewayProcess) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(gateway.admin_url + "/routes", timeout=5).json()
    return result


def ingress_on(name: str, url_path: str, service_name: str = "api", **options: Any) -> dict[str, Any]:
    return ingress(name, rules=[("app.example", [path(url_path, service_name)])], **options)


def routed(kube: KmockCluster, name: str, upstream: RecordingUpstream) -> None:
    kube.create(service(name))
    kube.create(endpoint_slice(name, ["127.0.0.1"], port=upstream.port))


def test_routes_follow_creates_updates_and_deletes_within_a_second(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api, web = upstream("api"), upstream("web")
    routed(kube, "api", api)
    routed(kube, "web", web)
    kube.create(ingress_on("shop", "/shop"))
    gateway = kube_gateway()
    assert answered_by(gateway, "/shop/cart") == "api"
    assert status(gateway, "/blog") == 404

    kube.create(ingress_on("blog", "/blog", "web"))
    wait_until(lambda: answered_by(gateway, "/blog/1") == "web", timeout=FOLLOW, message="a new Ingress")

    kube.patch(
        "Ingress", "shop", {"spec": {"rules": [{"host": "app.example", "http": {"paths": [path("/store", "api")]}}]}}
    )
    wait_until(lambda: status(gateway, "/shop/cart") == 404, timeout=FOLLOW, message="an Ingress's new path")
    assert answered_by(gateway, "/store") == "api"

    kube.patch("EndpointSlice", "api-slice", {"ports": [{"name": "http", "port": web.port}]})
    wait_until(lambda: answered_by(gateway, "/store") == "web", timeout=FOLLOW, message="a moved endpoint")

    kube.delete("Ingress", "blog")
    wait_until(lambda: status(gateway, "/blog/1") == 404, timeout=FOLLOW, message="a deleted Ingress")

    kube.delete("Service", "api")
    wait_until(lambda: status(gateway, "/store") == 503, timeout=FOLLOW, message="a deleted Service")


def test_ready_only_after_every_kind_was_listed(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    routed(kube, "api", upstream("api"))
    kube.create(ingress_on("shop", "/"))
    kube.fail_next("Secret", action="list", status=500, count=2)  # backs off about 0.75-1.5 s
    gateway = kube_gateway(wait_ready=False)
    wait_until(lambda: bool(kube.requests("Secret", action="list")), timeout=10, message="a first Secret list")
    ready = httpx.get(gateway.admin_url + "/ready", timeout=5)
    assert ready.status_code == 503, "ready before the Secrets were listed"
    gateway.wait_ready(timeout=10)
    assert answered_by(gateway, "/") == "api"
    lists = kube.requests(action="list")
    secret_lists = [row for row in lists if row.resource == "v1/secrets"]
    assert len(secret_lists) == 3
    first_secret_list = secret_lists[0].id
    listed_before = {row.resource for row in lists if row.id < first_secret_list}
    # Secrets are listed once the Ingresses are in, knowing which ones to keep.
    assert "networking.k8s.io/v1/ingresses" in listed_before


def test_watches_cut_by_errors_gone_and_http_failures_recover(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    routed(kube, "api", upstream("api"))
    kube.create(ingress_on("one", "/one"))
    kube.create(ingress_on("two", "/two"))
    gateway = kube_gateway()
    assert status(gateway, "/one") == 200

    def watching() -> bool:
        return kube.open_watches("Ingress") == 1

    # An ERROR 500 event: back off, list again, replace. "one" is deleted during the gap;
    # kmock never reports such a deletion on a new watch, so only the re-list can see it.
    mark = kube.request_count()
    assert kube.cut_watches("Ingress", "error") == 1
    kube.delete("Ingress", "one")
    wait_until(lambda: status(gateway, "/one") == 404, timeout=5, message="the deletion made during the gap")
    assert kube.requests("Ingress", action="list", since=mark), "no re-list after the error"
    wait_until(watching, timeout=5, message="the watch to be re-opened")

    # An ERROR 410 event: list again at once.
    mark = kube.request_count()
    assert kube.cut_watches("Ingress", "gone") == 1
    wait_until(lambda: len(kube.requests("Ingress", action="list", since=mark)) == 1, timeout=5, message="a re-list")
    wait_until(watching, timeout=5, message="the watch to be re-opened")
    kube.create(ingress_on("three", "/three"))
    wait_until(lambda: status(gateway, "/three") == 200, timeout=FOLLOW, message="a change after 410")

    # The server ends the watch, and re-opening it fails with HTTP 500, then HTTP 410.
    def relisted(since: int) -> bool:
        return bool(kube.requests("Ingress", action="list", since=since))

    def served(url_path: str) -> bool:
        return status(gateway, url_path) == 200

    for code in (500, 410):
        mark = kube.request_count()
        kube.fail_next("Ingress", action="watch", status=code)
        assert kube.cut_watches("Ingress", "close") == 1
        wait_until(partial(relisted, mark), timeout=5, message="a re-list")
        wait_until(watching, timeout=5, message="the watch to be re-opened")
        kube.create(ingress_on(f"after-{code}", f"/after-{code}"))
        wait_until(partial(served, f"/after-{code}"), timeout=FOLLOW, message=f"a change after HTTP {code}")
    assert status(gateway, "/two") == 200
    assert "Traceback" not in gateway.log()


def test_only_the_namespaces_given_are_watched(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    api = upstream("api")
    for namespace in ("shop", "blog", "other"):
        kube.create(service("api", namespace=namespace))
        kube.create(endpoint_slice("api", ["127.0.0.1"], port=api.port, namespace=namespace))
        kube.create(ingress(namespace, namespace=namespace, rules=[("app.example", [path(f"/{namespace}", "api")])]))
    gateway = kube_gateway(namespaces=["shop", "blog"])
    assert status(gateway, "/shop") == 200
    assert status(gateway, "/blog") == 200
    assert status(gateway, "/other") == 404
    paths = {row.path for row in kube.requests(action="watch")}
    assert "/apis/networking.k8s.io/v1/namespaces/shop/ingresses" in paths
    assert "/apis/networking.k8s.io/v1/ingresses" not in paths
    assert "/apis/networking.k8s.io/v1/ingressclasses" in paths  # cluster-scoped: watched whole
    assert not [p for p in paths if "/namespaces/other/" in p]


def test_a_secret_is_loaded_when_an_ingress_starts_to_use_it(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    routed(kube, "api", upstream("api"))
    kube.create(secret("keys", {"alice": "alice-key"}))
    kube.create(ingress_on("open", "/open"))
    gateway = kube_gateway()
    assert status(gateway, "/open") == 200
    lists_before = len(kube.requests("Secret", action="list"))

    kube.create(ingress_on("shop", "/shop", annotations=plugin_annotations({"key-auth": {"secret": "keys"}})))
    wait_until(lambda: status(gateway, "/shop") == 401, timeout=FOLLOW, message="the protected route")
    key = {"host": "app.example", "x-api-key": "alice-key"}
    assert httpx.get(gateway.url + "/shop", headers=key, timeout=5).status_code == 200
    # The Secret was dropped while unreferenced, listed again when referenced, and the
    # table waited for it: the Ingress was never rejected for a missing Secret.
    assert len(kube.requests("Secret", action="list")) == lists_before + 1
    assert "Ingress default/shop rejected" not in gateway.log()
    assert routes(gateway)["rejected"] == []

    kube.patch("Secret", "keys", {"data": {"alice": "bmV3LWtleQ=="}})  # "new-key"
    rotated = {"host": "app.example", "x-api-key": "new-key"}
    wait_until(
        lambda: httpx.get(gateway.url + "/shop", headers=rotated, timeout=5).status_code == 200,
        timeout=FOLLOW,
        message="the rotated key",
    )


def test_status_and_events_reach_the_api_server_and_status_is_cleared_on_shutdown(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    routed(kube, "api", upstream("api"))
    kube.create(ingress_on("shop", "/shop"))
    kube.create(ingress_on("bad", "/bad", annotations=plugin_annotations({"no-such-plugin": None})))
    gateway = kube_gateway(settings={"update_status": True, "events": True, "publish_status_address": ["203.0.113.7"]})

    def address() -> Any:
        found = kube.get("Ingress", "shop") or {}
        return found.get("status", {}).get("loadBalancer", {}).get("ingress")

    wait_until(lambda: address() == [{"ip": "203.0.113.7"}], timeout=5, message="the Ingress status")

    def warnings() -> list[dict[str, Any]]:
        events = kube.list_objects("Event", namespace="default") + kube.list_objects("EventV1", namespace="default")
        return [event for event in events if event.get("type") == "Warning"]

    wait_until(lambda: bool(warnings()), timeout=5, message="a Warning Event for the rejected Ingress")
    assert "no-such-plugin" in str(warnings()[0])
    assert "bad" in str(warnings()[0])
    gateway.stop()
    assert not address(), "the status was not cleared on shutdown"


def test_bookmarks_move_the_watch_on_without_an_event(
    tmp_path: Path, gateway_process: Callable[..., GatewayProcess], upstream: Callable[..., RecordingUpstream]
) -> None:
    kube = KmockCluster(tmp_path / "kmock", bookmark_interval=0.1).start()  # a BOOKMARK after 0.1 s idle
    try:
        routed(kube, "api", upstream("api"))
        kube.create(ingress_on("shop", "/shop"))
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"kubernetes": {"leader_election": False, "update_status": False}}))
        gateway = gateway_process(
            None, config=config, extra_args=["--kubernetes", "--kubeconfig", str(kube.kubeconfig)]
        )
        listed = int(kube.requests("Ingress", action="watch")[0].params["resourceVersion"])
        kube.create(service("unrelated"))  # the version moves on; no Ingress changes
        version = str(listed + 1)

        def rewatched_from_the_bookmark() -> bool:
            # Only a BOOKMARK tells the Ingress watch about the new version. Once one is in,
            # a watch the server ends is re-opened from it (kmock's replay of the existing
            # Ingresses on every new watch sets it back, so keep ending watches until then).
            if kube.requests("Ingress", action="watch")[-1].params["resourceVersion"] == version:
                return True
            kube.cut_watches("Ingress", "close")
            return False

        wait_until(rewatched_from_the_bookmark, timeout=5, interval=0.3, message=f"a watch from version {version}")
        assert len(kube.requests("Ingress", action="list")) == 1, "a bookmark or a clean end is no reason to list"
        gateway.stop()
    finally:
        kube.stop()
