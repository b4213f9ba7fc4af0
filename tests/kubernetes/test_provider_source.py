"""The Kubernetes route source in-process, on kmock: which Secrets it keeps, and how it waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from kmock_server import KmockCluster

from gateway_core.manifests import Ingress, Secret, Snapshot
from gateway_core.providers.kubernetes import source as source_module
from gateway_core.providers.kubernetes.source import KubernetesSource
from gateway_core.settings import load_settings
from gateway_core.testing import ingress, plugin_annotations, secret

QUIET = {"leader_election": False, "update_status": False, "events": False, "debounce": 0.02}


class Published:
    """The snapshots a source published, with a way to wait for one."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.arrived = asyncio.Event()

    async def __call__(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)
        self.arrived.set()

    async def until(self, predicate: Callable[[Snapshot], bool], limit: float = 5.0) -> Snapshot:
        async with asyncio.timeout(limit):
            while not (self.snapshots and predicate(self.snapshots[-1])):
                self.arrived.clear()
                await self.arrived.wait()
        return self.snapshots[-1]


def secrets(snapshot: Snapshot) -> set[str]:
    return {obj.name for obj in snapshot.objects if isinstance(obj, Secret)}


def ingresses(snapshot: Snapshot) -> set[str]:
    return {obj.name for obj in snapshot.objects if isinstance(obj, Ingress)}


@pytest.fixture
async def published(kube: KmockCluster) -> AsyncIterator[Published]:
    settings = load_settings(None, {"kubernetes": {**QUIET, "enabled": True, "kubeconfig": str(kube.kubeconfig)}})
    sink = Published()
    task = asyncio.create_task(KubernetesSource(settings, api=kube.api).run(sink))
    yield sink
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_only_referenced_secrets_reach_a_snapshot(kube: KmockCluster, published: Published) -> None:
    kube.create(secret("keys", {"alice": "k"}))
    kube.create(secret("unrelated", {"password": "hunter2"}))
    kube.create(ingress("shop", annotations=plugin_annotations({"key-auth": {"secret": "keys"}})))
    first = await published.until(lambda snapshot: "shop" in ingresses(snapshot))
    assert secrets(first) == {"keys"}

    kube.patch("Ingress", "shop", {"metadata": {"annotations": {"meta-native.io/plugin.key-auth": '{"secret": "k2"}'}}})
    kube.create(secret("k2", {"bob": "k"}))
    later = await published.until(lambda snapshot: "k2" in secrets(snapshot))
    assert secrets(later) == {"k2"}  # no longer referenced: dropped
    assert all("unrelated" not in secrets(snapshot) for snapshot in published.snapshots)


async def test_secrets_that_cannot_be_listed_again_hold_other_changes_only_briefly(
    kube: KmockCluster, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_module, "SECRET_RELIST_WAIT", 0.5)
    kube.create(secret("keys", {"alice": "k"}))
    await published.until(lambda snapshot: not secrets(snapshot))  # listed, nothing referenced
    kube.fail_next("Secret", action="list", status=500, count=1000)
    kube.create(ingress("shop", annotations=plugin_annotations({"key-auth": {"secret": "keys"}})))
    held = await published.until(lambda snapshot: "shop" in ingresses(snapshot), limit=3)
    assert not secrets(held)  # published without the Secret rather than not at all
