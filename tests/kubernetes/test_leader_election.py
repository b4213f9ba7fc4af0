"""Leader election over a coordination.k8s.io/v1 Lease, against a real kmock API server.

The tests' kmock subclass stamps resourceVersions and answers a write naming a stale one with
409, as a real API server does, so conditional updates are exercised for real here. With a
plain kmock 0.8 (no resourceVersions) two candidates racing for the same expired Lease in the
same instant could both believe they won, until the next attempt reads who holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kmock_server import KmockCluster, KubeError
from kubernetes.client import ApiClient, Configuration
from status_kit import FAST, eventually, shared_cluster, unique

from gateway_core.providers.kubernetes.calls import micro_time, parse_time
from gateway_core.providers.kubernetes.leader import Attempt, LeaderElector, lease_expired
from gateway_core.testing import free_port

cluster = shared_cluster()


@pytest.fixture
def lease(cluster: KmockCluster) -> Lease:
    return Lease(cluster, unique("lease"))


class Lease:
    """One test's Lease on the shared kmock: candidates for it, and its stored spec."""

    def __init__(self, kube: KmockCluster, name: str) -> None:
        self.kube = kube
        self.name = name

    def candidate(self, identity: str, *, api: ApiClient | None = None, **options: Any) -> LeaderElector:
        timings = {key: FAST[key] for key in ("lease_duration", "renew_deadline", "retry_period")}
        return LeaderElector(
            api or self.kube.api, name=self.name, namespace="default", identity=identity, **{**timings, **options}
        )

    def spec(self) -> dict[str, Any]:
        stored = self.kube.get("Lease", self.name)
        return dict((stored or {}).get("spec") or {})

    def create(self, holder: str, *, renewed: datetime, duration: int = 15, transitions: int = 3) -> None:
        """Create the Lease as another candidate left it."""
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(renewed),
            "leaseTransitions": transitions,
        }
        self.kube.create(
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name}, "spec": spec}
        )

    def fetches(self, since: int = 0) -> int:
        """How many reads of this Lease kmock answered (or failed) since the ``since`` mark."""
        return len([r for r in self.kube.requests("Lease", action="fetch", since=since) if r.name == self.name])


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "expired"),
    [
        pytest.param({}, True, id="no-holder"),
        pytest.param({"holderIdentity": ""}, True, id="released"),
        pytest.param({"holderIdentity": "a"}, True, id="never-renewed"),
        pytest.param({"holderIdentity": "a", "renewTime": "yesterday-ish"}, True, id="unreadable-renew-time"),
        pytest.param({"holderIdentity": "a", "renewTime": "2025-01-01T11:59:50.000000Z"}, False, id="fresh"),
        pytest.param({"holderIdentity": "a", "renewTime": "2025-01-01T11:59:40.000000Z"}, True, id="expired"),
        pytest.param(
            {"holderIdentity": "a", "renewTime": "2025-01-01T11:59:40Z", "leaseDurationSeconds": 30},
            False,
            id="longer-lease",
        ),
    ],
)
def test_a_lease_may_be_taken_when_free_or_not_renewed_in_time(spec: dict[str, Any], expired: bool) -> None:
    assert lease_expired(spec, NOW, default_duration=15) is expired


def test_the_first_candidate_creates_the_lease_and_leads(lease: Lease) -> None:
    a = lease.candidate("a", lease_duration=1.5)
    assert a.try_acquire_or_renew() is Attempt.LEADING
    spec = lease.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 2  # whole seconds, rounded up
    assert spec["leaseTransitions"] == 0
    assert parse_time(spec["acquireTime"]) is not None


def test_a_valid_lease_held_by_another_is_respected_and_renewed_by_its_holder(lease: Lease) -> None:
    a, b = lease.candidate("a"), lease.candidate("b")
    assert a.try_acquire_or_renew() is Attempt.LEADING
    first_renewal = parse_time(lease.spec()["renewTime"])
    assert b.try_acquire_or_renew() is Attempt.FOLLOWING
    assert a.try_acquire_or_renew() is Attempt.LEADING
    spec = lease.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseTransitions"] == 0
    renewed = parse_time(spec["renewTime"])
    assert first_renewal is not None
    assert renewed is not None
    assert renewed > first_renewal


def test_an_expired_lease_is_taken_over(lease: Lease) -> None:
    lease.create("crashed", renewed=datetime.now(UTC) - timedelta(hours=1))
    assert lease.candidate("b").try_acquire_or_renew() is Attempt.LEADING
    spec = lease.spec()
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 4
    assert spec["acquireTime"] == spec["renewTime"]


def test_a_lease_renewed_by_another_holder_is_not_taken(lease: Lease) -> None:
    lease.create("alive", renewed=datetime.now(UTC))
    assert lease.candidate("b").try_acquire_or_renew() is Attempt.FOLLOWING
    assert lease.spec()["holderIdentity"] == "alive"


def test_release_clears_the_holder_so_another_takes_over_at_once(lease: Lease) -> None:
    a, b = lease.candidate("a"), lease.candidate("b")
    assert a.try_acquire_or_renew() is Attempt.LEADING
    assert lease.candidate("c").release_blocking() is False  # not the holder: nothing to release
    assert lease.spec()["holderIdentity"] == "a"
    assert a.release_blocking() is True
    assert "holderIdentity" not in lease.spec()
    assert b.try_acquire_or_renew() is Attempt.LEADING
    assert a.try_acquire_or_renew() is Attempt.FAILED  # a released elector competes no more
    assert lease.spec()["holderIdentity"] == "b"


def test_updates_are_conditional_on_the_resource_version_read(lease: Lease) -> None:
    kube = lease.kube
    a = lease.candidate("a")
    assert a.try_acquire_or_renew() is Attempt.LEADING
    version = kube.get("Lease", lease.name)["metadata"]["resourceVersion"]  # type: ignore[index]
    mark = kube.request_count()
    assert a.try_acquire_or_renew() is Attempt.LEADING
    (renewal,) = kube.requests("Lease", action="update", since=mark)
    assert renewal.data["metadata"] == {"resourceVersion": version}
    # Another writer got in between: the API server refuses a write based on the old version ...
    with pytest.raises(KubeError) as refused:
        kube.patch("Lease", lease.name, {"metadata": {"resourceVersion": version}, "spec": {"holderIdentity": "b"}})
    assert refused.value.status == 409
    # ... and a candidate whose write is refused so follows rather than leads.
    kube.fail_next("Lease", action="update", status=409)
    assert a.try_acquire_or_renew() is Attempt.FOLLOWING


def test_a_failing_or_unreachable_api_is_a_failed_attempt(lease: Lease) -> None:
    lease.kube.fail_next("Lease", action="fetch", status=500)
    assert lease.candidate("a").try_acquire_or_renew() is Attempt.FAILED
    nowhere = ApiClient(Configuration(host=f"http://127.0.0.1:{free_port()}"))
    try:
        assert lease.candidate("a", api=nowhere).try_acquire_or_renew() is Attempt.FAILED
    finally:
        nowhere.close()


async def test_a_leader_steps_down_only_after_renewals_fail_for_the_renew_deadline(lease: Lease) -> None:
    changes: list[bool] = []
    a = lease.candidate("a", on_change=changes.append)
    task = asyncio.create_task(a.run())
    try:
        await eventually(lambda: a.leading, message="a to lead")
        mark = await asyncio.to_thread(lease.kube.request_count)
        await asyncio.to_thread(lease.kube.fail_next, "Lease", action="fetch", status=500, count=10)
        await eventually(lambda: lease.fetches(mark) >= 2, message="two failed renewals")
        assert a.leading, "a failed renewal or two are within the renew deadline"
        await eventually(lambda: not a.leading, message="a to step down")
        assert await asyncio.to_thread(lease.fetches, mark) >= a.renew_deadline / a.retry_period - 1
        # The API answers again: the Lease is still a's (nobody took it), so a leads again.
        await eventually(lambda: a.leading, message="a to lead again")
        assert changes == [True, False, True]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_crashed_leader_is_replaced_only_once_its_lease_expired(lease: Lease) -> None:
    a, b = lease.candidate("a"), lease.candidate("b")
    task_a = asyncio.create_task(a.run())
    await eventually(lambda: a.leading, message="a to lead")
    mark = await asyncio.to_thread(lease.kube.request_count)
    task_b = asyncio.create_task(b.run())
    try:
        await eventually(lambda: lease.fetches(mark) >= 6, message="both to compete a while")
        assert not b.leading
        task_a.cancel()  # a crash: no release
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        last_renewal = parse_time((await asyncio.to_thread(lease.spec))["renewTime"])
        await eventually(lambda: b.leading, message="b to take over")
        spec = await asyncio.to_thread(lease.spec)
        acquired = parse_time(spec["acquireTime"])
        assert spec["holderIdentity"] == "b"
        assert last_renewal is not None
        assert acquired is not None
        assert acquired - last_renewal >= timedelta(seconds=spec["leaseDurationSeconds"])
    finally:
        task_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_b
