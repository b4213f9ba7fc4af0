"""Load balancing through a real ``gateway run``: one Ingress per strategy over several real
upstream servers behind one Service, many requests each, the distribution measured.

One gateway (one worker, so round robin's rotation is exact) serves every Ingress of the
module. Pool ``pool`` is three fast echo servers; pool ``mixed`` is two of them plus one that
answers after :data:`SLOW` seconds. Endpoint state (requests in flight, latency) is per
endpoint, shared by every route that reaches it, as in production.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    ingress,
    path,
    pooled_service,
    write_manifests,
)

pytestmark = pytest.mark.e2e

SLOW = 0.15
"""Seconds the slow upstream takes to answer."""
BALANCE = "meta-native.io/load-balance"


class SlowUpstream:
    """An HTTP server that answers ``{"upstream": name}`` after ``delay`` seconds, many at a time."""

    def __init__(self, name: str, delay: float) -> None:
        payload = json.dumps({"upstream": name}).encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                threading.Event().wait(delay)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Env:
    gateway: GatewayProcess
    client: httpx.Client
    ports: dict[str, int]

    def get(self, host: str, **headers: str) -> httpx.Response:
        """One request; cookies only as given (the client's jar is emptied first)."""
        self.client.cookies.clear()
        response = self.client.get("/", headers={"host": host, **headers})
        assert response.status_code == 200, response.text
        return response

    def served_by(
        self, host: str, count: int, *, concurrency: int = 1, headers: dict[str, str] | None = None
    ) -> Counter[str]:
        """How many of ``count`` requests each upstream answered."""

        def one(_: int) -> str:
            return str(self.get(host, **(headers or {})).json()["upstream"])

        with ThreadPoolExecutor(concurrency) as pool:
            return Counter(pool.map(one, range(count)))


def balanced(name: str, service: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {BALANCE: json.dumps(config)} if config is not None else None
    return ingress(name, rules=[(f"{name}.test", [path("/", service)])], annotations=annotations)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    fast = [RecordingUpstream(name=name).start() for name in ("a", "b", "c")]
    slow = SlowUpstream("slow", SLOW)
    ports = {server.name: server.port for server in fast} | {"slow": slow.port}
    a, b, c = (f"127.0.0.1:{ports[name]}" for name in "abc")
    objects = [
        *pooled_service("pool", [ports["a"], ports["b"], ports["c"]]),
        *pooled_service("mixed", [ports["a"], ports["b"], ports["slow"]]),
        balanced("round-robin", "pool"),
        balanced("weighted", "pool", {"weights": {a: 3, b: 1, c: 0}}),
        balanced("random", "pool", {"strategy": "random", "weights": {a: 2}}),
        balanced("round-robin-mixed", "mixed"),
        balanced("least-request", "mixed", {"strategy": "least-request"}),
        balanced("ewma", "mixed", {"strategy": "ewma"}),
        balanced("hash", "pool", {"strategy": "hash", "hash_on": "header:x-user"}),
        balanced("hash-client", "pool", {"strategy": "hash"}),
        balanced("sticky", "pool", {"affinity": {"name": "srv", "max_age": 300}}),
        balanced("bad-strategy", "pool", {"strategy": "fastest"}),
        balanced("bad-hash", "pool", {"strategy": "hash", "hash_on": "query:id"}),
    ]
    manifests = tmp_path_factory.mktemp("load-balancing") / "manifests"
    write_manifests(manifests, objects)
    gateway = GatewayProcess(manifests).start()
    client = httpx.Client(base_url=gateway.url, timeout=10.0, trust_env=False)
    try:
        yield Env(gateway, client, ports)
    finally:
        client.close()
        gateway.stop()
        for server in fast:
            server.stop()
        slow.stop()
    assert "Traceback" not in gateway.log(), gateway.log()


def test_round_robin_spreads_requests_evenly(env: Env) -> None:
    assert env.served_by("round-robin.test", 300) == {"a": 100, "b": 100, "c": 100}


def test_weighted_round_robin_follows_the_weights_and_weight_zero_gets_nothing(env: Env) -> None:
    assert env.served_by("weighted.test", 400) == {"a": 300, "b": 100}


def test_random_follows_the_weights(env: Env) -> None:
    shares = env.served_by("random.test", 1200)
    assert abs(shares["a"] / 1200 - 0.5) < 0.08, shares
    assert abs(shares["b"] / 1200 - 0.25) < 0.08, shares
    assert abs(shares["c"] / 1200 - 0.25) < 0.08, shares


def test_least_request_steers_away_from_a_slow_upstream_under_concurrency(env: Env) -> None:
    # Round robin gives the slow upstream its third whatever its speed ...
    assert env.served_by("round-robin-mixed.test", 240, concurrency=12)["slow"] == 80
    # ... least request sees its requests pile up and sends it few.
    shares = env.served_by("least-request.test", 240, concurrency=12)
    assert shares["slow"] / 240 < 0.15, shares
    assert min(shares["a"], shares["b"]) > 60, shares


def test_ewma_steers_away_from_a_slow_upstream_even_one_request_at_a_time(env: Env) -> None:
    shares = env.served_by("ewma.test", 150)
    assert shares["slow"] / 150 < 0.1, shares
    assert min(shares["a"], shares["b"]) > 30, shares


def test_hash_keeps_each_key_on_one_upstream_and_spreads_the_keys(env: Env) -> None:
    owner = {}
    for user in range(60):
        seen = env.served_by("hash.test", 3, headers={"x-user": f"user-{user}"})
        assert len(seen) == 1, f"user-{user} went to {seen}"
        owner[user] = next(iter(seen))
    spread = Counter(owner.values())
    assert set(spread) == {"a", "b", "c"}
    assert min(spread.values()) >= 8, spread


def test_hash_on_the_client_address_keeps_one_client_on_one_upstream(env: Env) -> None:
    assert len(env.served_by("hash-client.test", 30)) == 1


def test_cookie_affinity_sets_a_cookie_and_sticks_to_its_upstream(env: Env) -> None:
    first = env.get("sticky.test")
    set_cookie = first.headers.get("set-cookie")
    assert set_cookie is not None
    assert re.fullmatch(r"srv=[0-9a-f]{20}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax", set_cookie), set_cookie
    assert "127.0.0.1" not in set_cookie
    assert str(env.ports[first.json()["upstream"]]) not in set_cookie
    cookie = set_cookie.split(";")[0]
    for _ in range(30):
        again = env.get("sticky.test", cookie=cookie)
        assert again.json()["upstream"] == first.json()["upstream"]
        assert "set-cookie" not in again.headers
    # Clients without the cookie are still spread by the strategy, each told where it landed.
    fresh = [env.get("sticky.test") for _ in range(30)]
    assert Counter(response.json()["upstream"] for response in fresh) == {"a": 10, "b": 10, "c": 10}
    assert all("set-cookie" in response.headers for response in fresh)


def test_an_affinity_cookie_naming_no_upstream_is_replaced(env: Env) -> None:
    response = env.get("sticky.test", cookie="srv=00000000000000000000")
    set_cookie = response.headers.get("set-cookie", "")
    assert set_cookie.startswith("srv=")
    assert not set_cookie.startswith("srv=00000000000000000000")
    replaced = set_cookie.split(";")[0]
    assert {env.get("sticky.test", cookie=replaced).json()["upstream"] for _ in range(10)} == {
        response.json()["upstream"]
    }


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad-strategy", "strategy: Input should be 'round-robin', 'random', 'least-request', 'ewma' or 'hash'"),
        ("bad-hash", "hash_on: Value error, must be client_ip, path, header:<name> or cookie:<name>"),
    ],
)
def test_an_invalid_annotation_rejects_only_its_ingress(env: Env, name: str, reason: str) -> None:
    response = env.client.get("/", headers={"host": f"{name}.test"})
    assert response.status_code == 503, response.text
    page = httpx.get(env.gateway.admin_url + "/routes", timeout=10.0, trust_env=False).json()
    rejected = {item["ingress"]: item for item in page["rejected"]}
    assert set(rejected) == {"default/bad-strategy", "default/bad-hash"}
    assert rejected[f"default/{name}"]["reasons"] == [f"annotation {BALANCE}: {reason}"]
    assert env.get("round-robin.test").json()["upstream"] in {"a", "b", "c"}
