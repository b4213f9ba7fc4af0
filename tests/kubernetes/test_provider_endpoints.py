"""Endpoint changes reach routing within a second, under continuous traffic, dropping nothing.

A real ``gateway run --kubernetes`` on kmock, real upstreams, and clients sending requests
without pause while a pod becomes unready, a new one appears and an old one comes back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from kmock_server import KmockCluster

from gateway_core.testing import GatewayProcess, endpoint_slice, ingress, path, service, wait_until

FOLLOW = 1.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class Pod:
    """An upstream that answers ``{"upstream": name}``, after ``?delay=`` seconds if asked."""

    name: str
    arrived: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self) -> Pod:
        pod = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # head and body are two writes: no 40 ms Nagle delay

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                pod.arrived.append(self.path)
                delay = float(parse_qs(urlsplit(self.path).query).get("delay", ["0"])[0])
                time.sleep(delay)
                body = json.dumps({"upstream": pod.name}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Answer:
    sent: float
    done: float
    status: int | None
    upstream: str | None
    error: str | None = None


class Traffic:
    """Clients sending requests back to back through the gateway, recording every answer."""

    def __init__(self, url: str, *, clients: int = 2) -> None:
        self.url = url
        self.clients = clients
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Traffic:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        with httpx.Client(headers={"host": "app.example"}, timeout=10) as client:
            while not self._stop.is_set():
                self.answers.append(fetch(client, self.url + "/api"))

    def since(self, moment: float) -> list[Answer]:
        return [answer for answer in list(self.answers) if answer.sent >= moment]

    def failures(self) -> list[Answer]:
        return [answer for answer in list(self.answers) if answer.status != 200]


def fetch(client: httpx.Client, url: str) -> Answer:
    sent = time.monotonic()
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return Answer(sent, time.monotonic(), None, None, repr(exc))
    upstream = response.json().get("upstream") if response.status_code == 200 else None
    return Answer(sent, time.monotonic(), response.status_code, upstream)


@pytest.fixture
def pods() -> Iterator[Callable[[str], Pod]]:
    started: list[Pod] = []

    def make(name: str) -> Pod:
        pod = Pod(name).start()
        started.append(pod)
        return pod

    yield make
    for pod in started:
        pod.stop()


def one_endpoint(*, ready: bool) -> list[dict[str, Any]]:
    """The ``endpoints`` of a pod's slice (each pod has a slice of its own: its own port)."""
    return [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}]


def slice_for(pod: Pod, *, ready: bool = True) -> dict[str, Any]:
    return endpoint_slice("api", [("127.0.0.1", ready)], port=pod.port, name=f"api-{pod.name}")


def test_endpoint_changes_follow_within_a_second_without_failing_a_request(
    kube: KmockCluster, kube_gateway: Callable[..., GatewayProcess], pods: Callable[[str], Pod]
) -> None:
    one, two = pods("one"), pods("two")
    kube.create(service("api"))
    kube.create(slice_for(one))
    kube.create(ingress("app", rules=[("app.example", [path("/api", "api")])]))
    gateway = kube_gateway()

    with Traffic(gateway.url) as traffic:
        wait_until(lambda: len(traffic.answers) > 20, timeout=5, message="traffic")

        # A slow request is in flight on "one" when it becomes unready and "two" appears.
        slow: list[Answer] = []
        slow_client = httpx.Client(headers={"host": "app.example"}, timeout=10)
        in_flight = threading.Thread(target=lambda: slow.append(fetch(slow_client, gateway.url + "/api?delay=1.5")))
        in_flight.start()
        wait_until(lambda: any("delay" in item for item in one.arrived), timeout=5, message="the slow request")
        changed = time.monotonic()
        kube.patch("EndpointSlice", "api-one", {"endpoints": one_endpoint(ready=False)})
        kube.create(slice_for(two))

        def only_two() -> bool:
            recent = traffic.since(time.monotonic() - 0.2)
            return len(recent) >= 5 and {answer.upstream for answer in recent} == {"two"}

        wait_until(only_two, timeout=FOLLOW, message="traffic to leave the unready pod for the new one")
        switched = time.monotonic() - changed
        in_flight.join(10)
        slow_client.close()
        assert slow[0].status == 200, f"the in-flight request failed: {slow[0]}"
        assert slow[0].upstream == "one"
        assert slow[0].done > changed, "the slow request was not in flight during the change"

        # Scaling up: "one" is ready again and takes its share.
        scaled = time.monotonic()
        kube.patch("EndpointSlice", "api-one", {"endpoints": one_endpoint(ready=True)})
        wait_until(
            lambda: {"one", "two"} <= {answer.upstream for answer in traffic.since(scaled)},
            timeout=FOLLOW,
            message="the pod that is ready again to get traffic",
        )
    assert traffic.failures() == [], f"{len(traffic.failures())} of {len(traffic.answers)} requests failed"
    assert switched < FOLLOW
    assert len(traffic.answers) > 50  # traffic really was continuous
