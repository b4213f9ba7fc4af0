"""Canaries and request mirroring through a real ``gateway run`` process and real upstreams.

One gateway (module scope) serves a host per scenario. Upstreams are ``RecordingUpstream``
echo servers, which name themselves in their answer, plus a slow mirror written here that
answers only after ``SLOW_MIRROR_DELAY`` seconds. Shares are measured over many requests
with tolerances of several standard deviations; the slow-mirror check compares the main
responses with the mirror's own delay, not with a tight absolute time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_core.manifests.upstream_policy import CANARY, MIRROR
from gateway_core.testing import (
    GatewayProcess,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    service,
    wait_until,
    write_manifests,
)

pytestmark = pytest.mark.e2e

SLOW_MIRROR_DELAY = 2.0
"""Seconds the slow mirror waits before answering."""


class SlowMirror:
    """An HTTP server that reads each request whole, then answers after ``SLOW_MIRROR_DELAY``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.answered = 0
        slow = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                slow.received.append((self.command, self.path, body))
                time.sleep(SLOW_MIRROR_DELAY)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                slow.answered += 1

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Setup:
    gateway: GatewayProcess
    stable: RecordingUpstream
    beta: RecordingUpstream
    gamma: RecordingUpstream
    mirror: RecordingUpstream
    slow: SlowMirror
    access_log: Path


def _canary(service_name: str, **selectors: Any) -> dict[str, Any]:
    return {"service": service_name, "port": "http", **selectors}


def _site(name: str, host: str, annotations: dict[str, str]) -> dict[str, Any]:
    return ingress(name, rules=[(host, [path("/", "stable")])], annotations=annotations)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    upstreams = [RecordingUpstream(name=name).start() for name in ("stable", "beta", "gamma", "mirror")]
    stable, beta, gamma, mirror = upstreams
    slow = SlowMirror()
    directory = tmp_path_factory.mktemp("manifests")
    access_log = tmp_path_factory.mktemp("logs") / "access.log"
    write_manifests(
        directory,
        [
            *routed_service("stable", stable.port),
            *routed_service("beta", beta.port),
            *routed_service("gamma", gamma.port),
            *routed_service("mirror", mirror.port),
            *routed_service("slow-mirror", slow.port),
            *routed_service("down", free_port()),  # an endpoint nobody listens on
            service("empty"),  # no EndpointSlice: no ready endpoint
            _site(
                "weights",
                "weights.test",
                {CANARY: json.dumps([_canary("beta", weight=10), _canary("gamma", weight=20)])},
            ),
            _site(
                "matches",
                "matches.test",
                {
                    CANARY: json.dumps(
                        [
                            _canary("beta", header={"name": "X-Canary", "values": ["beta"]}, cookie={"name": "beta"}),
                            _canary("gamma", header={"name": "X-Gamma"}),
                        ]
                    ),
                    **plugin_annotations(
                        {"access-log": {"output": str(access_log), "fields": ["path", "service", "upstream"]}}
                    ),
                },
            ),
            _site(
                "broken-canary",
                "broken-canary.test",
                {CANARY: json.dumps([_canary("empty", weight=100, header={"name": "x-canary"})])},
            ),
            _site("mirrored", "mirrored.test", {MIRROR: json.dumps({"service": "mirror", "port": "http"})}),
            _site(
                "slow-mirror",
                "slow-mirror.test",
                {MIRROR: json.dumps({"service": "slow-mirror", "port": "http", "timeout": 30})},
            ),
            _site(
                "down-mirror",
                "down-mirror.test",
                {MIRROR: json.dumps([{"service": "down", "port": "http"}, {"service": "empty", "port": "http"}])},
            ),
        ],
    )
    gateway = GatewayProcess(directory).start()
    try:
        yield Setup(gateway, stable, beta, gamma, mirror, slow, access_log)
    finally:
        gateway.stop()
        for upstream in upstreams:
            upstream.stop()
        slow.stop()


@pytest.fixture
def client(setup: Setup) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=setup.gateway.url, timeout=30) as http:
        yield http


def _served_by(client: httpx.Client, host: str, **options: Any) -> str:
    response = client.get("/", headers={"host": host, **options.pop("headers", {})}, **options)
    assert response.status_code == 200, response.text
    upstream: str = response.json()["upstream"]
    return upstream


def _samples(setup: Setup, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(setup.gateway.admin_url + "/metrics").text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    }


def _metric(setup: Setup, metric: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for key, value in _samples(setup, metric).items() if wanted <= set(key))


# --- canaries -------------------------------------------------------------------------------


def test_weights_split_traffic_between_two_canaries_and_the_route(setup: Setup, client: httpx.Client) -> None:
    requests = 2000
    counts = Counter(_served_by(client, "weights.test") for _ in range(requests))
    share = {name: count / requests for name, count in counts.items()}
    # Standard deviations at n=2000: 0.67 points (10 %), 0.89 points (20 %); 4 points is >4.5 of them.
    assert share["beta"] == pytest.approx(0.10, abs=0.04)
    assert share["gamma"] == pytest.approx(0.20, abs=0.04)
    assert share["stable"] == pytest.approx(0.70, abs=0.05)
    # Metrics count each request under the Service that served it.
    route = "default/weights:weights.test:Prefix:/"
    for name in ("stable", "beta", "gamma"):
        assert _metric(setup, "gateway_requests_total", route=route, service=f"default/{name}") == counts[name]


def test_header_and_cookie_matches_pick_their_canary(client: httpx.Client) -> None:
    assert _served_by(client, "matches.test") == "stable"
    assert _served_by(client, "matches.test", headers={"x-canary": "beta"}) == "beta"
    assert _served_by(client, "matches.test", headers={"x-canary": "other"}) == "stable"
    assert _served_by(client, "matches.test", headers={"x-gamma": "yes"}) == "gamma"
    assert _served_by(client, "matches.test", headers={"cookie": "session=1; beta=always"}) == "beta"
    assert _served_by(client, "matches.test", headers={"cookie": "beta=no"}) == "stable"
    # Headers come before cookies; "never" keeps a request off that canary only.
    assert _served_by(client, "matches.test", headers={"x-gamma": "1", "cookie": "beta=always"}) == "gamma"
    assert _served_by(client, "matches.test", headers={"x-canary": "never", "cookie": "beta=always"}) == "stable"
    assert _served_by(client, "matches.test", headers={"x-canary": "never", "x-gamma": "1"}) == "gamma"


def test_the_access_log_names_the_service_that_served(setup: Setup, client: httpx.Client) -> None:
    client.get("/logged/stable", headers={"host": "matches.test"})
    client.get("/logged/beta", headers={"host": "matches.test", "x-canary": "beta"})

    def lines() -> dict[str, dict[str, Any]]:
        if not setup.access_log.exists():
            return {}
        entries = [json.loads(line) for line in setup.access_log.read_text().splitlines()]
        return {entry["path"]: entry for entry in entries if entry["path"].startswith("/logged/")}

    wait_until(lambda: len(lines()) == 2, message="two access log lines")
    logged = lines()
    assert logged["/logged/stable"]["service"] == "stable"
    assert logged["/logged/beta"]["service"] == "beta"
    assert logged["/logged/beta"]["upstream"] == f"127.0.0.1:{setup.beta.port}"


def test_a_canary_without_endpoints_never_costs_the_route_an_answer(client: httpx.Client) -> None:
    # Weight 100 and a header match, but no ready endpoint: everything goes to the route's own Service.
    served = Counter(_served_by(client, "broken-canary.test") for _ in range(50))
    served.update(_served_by(client, "broken-canary.test", headers={"x-canary": "1"}) for _ in range(10))
    assert served == {"stable": 60}


def test_routes_shows_the_canaries(setup: Setup) -> None:
    routes = httpx.get(setup.gateway.admin_url + "/routes").json()["routes"]
    weights = next(route for route in routes if route["host"] == "weights.test")
    assert [(canary["service"], canary["weight"]) for canary in weights["canaries"]] == [
        ("default/beta:http", 10),
        ("default/gamma:http", 20),
    ]


# --- mirrors --------------------------------------------------------------------------------


def test_the_mirror_receives_copies_of_requests_and_bodies(setup: Setup, client: httpx.Client) -> None:
    host = {"host": "mirrored.test"}
    payload = bytes(range(256)) * 400  # 100 KiB
    assert client.get("/get?x=1", headers={**host, "x-trace": "t1"}).status_code == 200
    assert client.post("/post", content=payload, headers=host).status_code == 200
    chunked = client.put("/chunked", content=iter([b"part-1;", b"part-2"]), headers=host)  # no Content-Length
    assert chunked.status_code == 200
    assert chunked.json()["body_length"] == 13
    wait_until(lambda: len(setup.mirror.requests) == 3, message="three mirrored requests")
    copies = {request.path: request for request in setup.mirror.requests}
    main = {request.path: request for request in setup.stable.requests if request.path in copies}
    assert copies["/get?x=1"].method == "GET"
    assert copies["/get?x=1"].headers["x-trace"] == "t1"
    assert copies["/get?x=1"].headers["host"] == "mirrored.test"  # the client's Host
    assert copies["/get?x=1"].headers["x-forwarded-for"] == main["/get?x=1"].headers["x-forwarded-for"]
    assert copies["/post"].body == payload == main["/post"].body
    assert copies["/post"].headers["content-length"] == str(len(payload))
    assert copies["/chunked"].body == b"part-1;part-2"
    assert copies["/chunked"].headers["content-length"] == "13"  # whole before sent, so its length is known
    wait_until(
        lambda: _metric(setup, "gateway_mirror_requests_total", service="default/mirror", result="ok") == 3,
        message="three mirrored copies counted",
    )


def test_a_slow_mirror_never_delays_the_main_response(setup: Setup, client: httpx.Client) -> None:
    host = {"host": "slow-mirror.test"}
    requests = 10
    started = time.perf_counter()
    for index in range(requests):
        response = client.post(f"/slow/{index}", content=b"x" * 1000, headers=host)
        assert response.status_code == 200
        assert response.json()["upstream"] == "stable"
    elapsed = time.perf_counter() - started
    # Waiting for the mirror would take requests * SLOW_MIRROR_DELAY (20 s); all of them
    # together must take less than one mirror delay.
    assert elapsed < SLOW_MIRROR_DELAY, f"{requests} requests took {elapsed:.2f}s"
    assert setup.slow.answered < requests  # the mirror was indeed still busy with them
    wait_until(lambda: setup.slow.answered == requests, timeout=SLOW_MIRROR_DELAY * 5, message="the slow mirror")
    assert sorted(body for _, _, body in setup.slow.received) == [b"x" * 1000] * requests


def test_a_mirror_that_is_down_or_empty_leaves_the_route_alone(setup: Setup, client: httpx.Client) -> None:
    host = {"host": "down-mirror.test"}
    for index in range(20):
        response = client.post(f"/down/{index}", content=b"payload", headers=host)
        assert response.status_code == 200, response.text
        assert response.json()["upstream"] == "stable"
    wait_until(
        lambda: _metric(setup, "gateway_mirror_requests_total", service="default/down", result="error") == 20,
        message="mirror errors counted",
    )
    assert _metric(setup, "gateway_mirror_requests_total", service="default/empty", result="no_endpoint") == 20
    assert "Traceback" not in setup.gateway.log()
