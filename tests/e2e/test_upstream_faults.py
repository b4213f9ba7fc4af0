"""Fault tests through a real ``gateway run``: upstreams that die, stall or fail in storms.

Several real upstream servers sit behind one Service (one EndpointSlice each); the gateway
routes to them with retries, timeouts and outlier detection set by annotations. What is
measured is a distribution over many requests (who served what, the slowest answer), never
one timed sample, and bounds are generous: what they catch is a request that hangs or waits
for a default timeout instead of the configured one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import GatewayProcess, ingress, path, pooled_service, wait_until, write_manifests
from tests.fault_upstreams import FaultyUpstream, UpstreamProcess
from tests.pipeline_harness import policy_annotations

pytestmark = pytest.mark.e2e

Gateways = Callable[..., GatewayProcess]


@dataclass(frozen=True)
class Answer:
    status: int
    upstream: str | None
    seconds: float


@pytest.fixture
def faulty() -> Iterator[Callable[..., FaultyUpstream]]:
    started: list[FaultyUpstream] = []

    def make(name: str, fault: str = "ok", **options: Any) -> FaultyUpstream:
        server = FaultyUpstream(name, fault, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def start_gateway(
    gateway_process: Gateways, directory: Path, routes: dict[str, tuple[list[int], dict[str, Any]]]
) -> GatewayProcess:
    """One Service and one Ingress per host: ``{host: (upstream ports, {policy: config})}``."""
    objects: list[dict[str, Any]] = []
    for index, (host, (ports, policies)) in enumerate(routes.items()):
        name = f"svc{index}"
        plugins = policies.pop("plugins", {})
        annotations = policy_annotations(**policies) | plugins
        objects += [
            *pooled_service(name, ports),
            ingress(name, rules=[(host, [path("/", name)])], annotations=annotations),
        ]
    write_manifests(directory, objects)
    return gateway_process(directory)


def send(client: httpx.Client, host: str, target: str, method: str = "GET", **options: Any) -> Answer:
    started = time.monotonic()
    response = client.request(method, target, headers={"host": host}, **options)
    seconds = time.monotonic() - started
    upstream = None
    if response.headers.get("content-type") == "application/json":
        upstream = response.json().get("upstream")
    return Answer(response.status_code, upstream, seconds)


def metric(gateway: GatewayProcess, name: str) -> float:
    """The sum of every sample of ``name`` on /metrics."""
    text = httpx.get(f"{gateway.admin_url}/metrics", timeout=5).text
    return sum(float(match) for match in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def assert_clean_log(gateway: GatewayProcess) -> None:
    assert "Traceback" not in gateway.log(), gateway.log()


# --- (1) an upstream killed under traffic ---------------------------------------------------------


class Traffic:
    """Clients sending GETs in a loop from threads until stopped, recording every answer."""

    def __init__(self, gateway: GatewayProcess, host: str, *, clients: int = 2) -> None:
        self.answers: list[Answer] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(gateway.url, host), daemon=True) for _ in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, host: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = send(client, host, "/")
                except httpx.HTTPError as exc:  # a hang ends in the 10 s client timeout
                    with self._lock:
                        self.errors.append(exc)
                    continue
                with self._lock:
                    self.answers.append(answer)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.answers


def test_an_upstream_killed_mid_run_is_retried_around_and_ejected(
    gateway_process: Gateways, manifests_dir: Path
) -> None:
    with UpstreamProcess("a") as first, UpstreamProcess("b") as doomed, UpstreamProcess("c") as third:
        gateway = start_gateway(
            gateway_process,
            manifests_dir,
            {"api.test": ([first.port, doomed.port, third.port], {"outlier_detection": {"base_ejection_time": 60}})},
        )
        traffic = Traffic(gateway, "api.test")
        try:
            wait_until(lambda: traffic.count() >= 150, timeout=30, message="traffic before the kill")
            doomed.kill()
            killed_at = traffic.count()
            wait_until(lambda: traffic.count() >= killed_at + 300, timeout=60, message="traffic after the kill")
        finally:
            answers = traffic.stop()
    assert traffic.errors == []
    assert {answer.status for answer in answers} == {200}, "every GET succeeded, retried around the dead one"
    assert max(answer.seconds for answer in answers) < 3.0
    before, after = answers[:killed_at], answers[killed_at + 20 :]
    assert {answer.upstream for answer in before} == {"a", "b", "c"}
    assert {answer.upstream for answer in after} == {"a", "c"}
    share = sum(answer.upstream == "a" for answer in after) / len(after)
    assert 0.3 < share < 0.7, f"the two live upstreams share the traffic ({share:.0%} on a)"
    assert metric(gateway, "gateway_upstream_ejections_total") == 1
    assert metric(gateway, "gateway_upstream_retries_total") >= 1
    assert f"endpoint 127.0.0.1:{doomed.port} of default/svc0 ejected" in gateway.log()
    assert_clean_log(gateway)


# --- (2) a slow upstream ----------------------------------------------------------------------------


def test_a_slow_upstream_costs_at_most_one_try(
    gateway_process: Gateways, manifests_dir: Path, faulty: Callable[..., FaultyUpstream]
) -> None:
    slow = faulty("slow", "slow", delay=10)
    fast = [faulty(f"fast-{index}") for index in range(2)]
    all_slow = [faulty(f"slow-{index}", "slow", delay=10) for index in range(3)]
    policies = {
        "timeouts": {"per_try": 0.3},
        "retries": {"on": ["timeout"], "attempts": 3},
        "outlier_detection": {"enabled": False},  # keep the slow one in rotation, measured every time
    }
    gateway = start_gateway(
        gateway_process,
        manifests_dir,
        {
            "mixed.test": ([slow.port, *(server.port for server in fast)], dict(policies)),
            "slow.test": ([server.port for server in all_slow], dict(policies)),
        },
    )
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        mixed = [send(client, "mixed.test", f"/m{index}") for index in range(30)]
        stuck = [send(client, "slow.test", f"/s{index}") for index in range(4)]
    assert {answer.status for answer in mixed} == {200}
    assert slow.count >= 5, "the slow endpoint was tried, and each time the request moved on"
    assert max(answer.seconds for answer in mixed) < 0.3 + 1.5
    assert {answer.status for answer in stuck} == {504}
    assert min(answer.seconds for answer in stuck) >= 0.85, "three tries of 0.3 s"
    assert max(answer.seconds for answer in stuck) < 0.9 + 1.5
    assert sum(server.count for server in all_slow) == 12
    assert_clean_log(gateway)


# --- (3) a 5xx storm --------------------------------------------------------------------------------


def test_a_5xx_storm_is_retried_and_the_stormy_endpoint_rests_then_returns(
    gateway_process: Gateways, manifests_dir: Path, faulty: Callable[..., FaultyUpstream]
) -> None:
    stormy = faulty("stormy", "status", status=503)
    calm = [faulty(f"calm-{index}") for index in range(2)]
    gateway = start_gateway(
        gateway_process,
        manifests_dir,
        {
            "api.test": (
                [stormy.port, *(server.port for server in calm)],
                {
                    "retries": {"on": ["gateway-error"]},
                    "outlier_detection": {"consecutive_failures": 3, "base_ejection_time": 1},
                },
            )
        },
    )
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        storm = [send(client, "api.test", f"/storm/{index}") for index in range(60)]
        assert {answer.status for answer in storm} == {200}, "the client never sees the storm"
        assert {answer.upstream for answer in storm} == {"calm-0", "calm-1"}
        assert metric(gateway, "gateway_upstream_ejections_total") >= 1
        assert stormy.count < 20, "ejected: most of the storm never reached it"
        stormy.fault = "ok"
        seen = stormy.count
        deadline = time.monotonic() + 10
        while stormy.count == seen and time.monotonic() < deadline:
            assert send(client, "api.test", "/calm").status == 200
            time.sleep(0.05)
        assert stormy.count > seen, "the ejection ended on its own"
        healed = [send(client, "api.test", f"/healed/{index}") for index in range(90)]
    shares = {name: sum(answer.upstream == name for answer in healed) for name in ("stormy", "calm-0", "calm-1")}
    assert all(count >= 15 for count in shares.values()), shares
    assert f"endpoint 127.0.0.1:{stormy.port} of default/svc0 ejected for 1s after 3 failures" in gateway.log()
    assert_clean_log(gateway)
