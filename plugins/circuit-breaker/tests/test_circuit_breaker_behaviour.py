"""circuit-breaker through a real in-process gateway, real sockets and real upstreams."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    endpoint_slice,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    service,
    wait_until,
    write_manifests,
)

Gateway = Callable[..., InProcessGateway]

NO_RETRIES = {"meta-native.io/retries": '{"attempts": 1}'}
"""The breaker alone: the gateway's retries (on by default) would move failed tries elsewhere."""


@pytest.fixture
def name() -> str:
    """A Service name of its own: breakers are process-wide, keyed by Service and config."""
    return f"api-{uuid.uuid4().hex[:8]}"


def _route(
    directory: Path, name: str, port: int, config: dict[str, Any], *, hosts: tuple[str | None, ...] = (None,)
) -> None:
    objects: list[dict[str, Any]] = [*routed_service(name, port)]
    for index, host in enumerate(hosts):
        objects.append(
            ingress(
                f"{name}-{index}",
                rules=[(host, [path("/", name)])],
                annotations=plugin_annotations({"circuit-breaker": config}) | NO_RETRIES,
            )
        )
    write_manifests(directory, objects)


def _is_circuit_open(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.json()["error"] == "circuit_open"


def test_upstream_500s_open_it_and_then_nothing_reaches_the_upstream(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name, status=500)
    _route(manifests_dir, name, backend.port, {"fail_max": 3, "reset_timeout": 30})
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/x").status_code for _ in range(3)] == [500, 500, 500]
        refused = [client.get("/x") for _ in range(5)]
    assert all(_is_circuit_open(response) for response in refused)
    assert {response.headers["retry-after"] for response in refused} <= {"29", "30"}
    assert refused[0].headers["content-type"] == "application/json"
    assert len(backend.requests) == 3


def test_a_stopped_upstream_trips_it_and_its_recovery_closes_it(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name)
    port = backend.port
    backend.stop()
    _route(manifests_dir, name, port, {"fail_max": 2, "reset_timeout": 0.3})
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        failed = [client.get("/x") for _ in range(2)]
        assert [response.json()["error"] for response in failed] == ["upstream_connect_failed"] * 2
        assert _is_circuit_open(client.get("/x"))
        revived = upstream(name, port=port)
        wait_until(lambda: client.get("/x").status_code == 200, message="the trial to close the breaker")
        assert [client.get("/x").status_code for _ in range(3)] == [200] * 3
    assert len(revived.requests) == 4  # the trial and three more: nothing while it was open


def test_a_failed_trial_opens_it_again(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name, status=502)
    _route(manifests_dir, name, backend.port, {"fail_max": 1, "reset_timeout": 0.3})
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        assert client.get("/x").status_code == 502
        assert _is_circuit_open(client.get("/x"))
        wait_until(lambda: client.get("/x").status_code == 502, message="the trial")
        assert len(backend.requests) == 2
        assert _is_circuit_open(client.get("/x"))
    assert len(backend.requests) == 2


def test_4xx_are_successes_and_the_failure_statuses_are_configurable(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name, status=404)
    _route(manifests_dir, name, backend.port, {"fail_max": 2, "failure_statuses": [429], "reset_timeout": 30})
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        assert [client.get("/x").status_code for _ in range(3)] == [404] * 3
        backend.status = 500  # not listed: a success under this config
        assert [client.get("/x").status_code for _ in range(3)] == [500] * 3
        backend.status = 429
        assert [client.get("/x").status_code for _ in range(2)] == [429] * 2
        assert _is_circuit_open(client.get("/x"))
    assert len(backend.requests) == 8


def test_routes_to_one_service_share_its_breaker(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name, status=503)
    config = {"fail_max": 2, "reset_timeout": 30}
    _route(manifests_dir, name, backend.port, config, hosts=("a.test", "b.test"))
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        assert client.get("/x", headers={"Host": "a.test"}).status_code == 503
        assert client.get("/x", headers={"Host": "a.test"}).status_code == 503
        assert _is_circuit_open(client.get("/x", headers={"Host": "b.test"}))
    assert len(backend.requests) == 2


def test_per_endpoint_opens_only_the_dead_endpoints_breaker(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    backend = upstream(name)  # listens on 127.0.0.1 only: 127.0.0.2 on that port refuses
    write_manifests(
        manifests_dir,
        [
            service(name),
            endpoint_slice(name, ["127.0.0.1", "127.0.0.2"], port=backend.port),
            ingress(
                name,
                rules=[(None, [path("/", name)])],
                annotations=plugin_annotations({"circuit-breaker": {"per": "endpoint", "fail_max": 2}}) | NO_RETRIES,
            ),
        ],
    )
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        warm_up = [client.get("/x") for _ in range(4)]  # round robin: two tries each
        after = [client.get("/x") for _ in range(6)]
    assert sorted(response.status_code for response in warm_up) == [200, 200, 502, 502]
    assert sorted(response.status_code for response in after) == [200] * 3 + [503] * 3
    open_answers = [response for response in after if response.status_code == 503]
    assert all(_is_circuit_open(response) for response in open_answers)
    assert all(int(response.headers["retry-after"]) >= 1 for response in open_answers)
    assert "paused" in open_answers[0].json()["message"]
    assert len(backend.requests) == 5


class GatedUpstream:
    """A real upstream whose answers wait until the test opens the gate."""

    def __init__(self) -> None:
        self.status = 500
        self.arrived = 0
        self.gate = threading.Event()
        self.gate.set()
        gated = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                gated.arrived += 1
                gated.gate.wait(10)
                self.send_response(gated.status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated() -> Iterator[GatedUpstream]:
    server = GatedUpstream()
    yield server
    server.close()


def test_half_open_lets_exactly_one_request_through_at_a_time(
    gated: GatedUpstream, manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    _route(manifests_dir, name, gated.port, {"fail_max": 1, "reset_timeout": 0.3})
    gw = in_process_gateway(manifests=manifests_dir)
    with httpx.Client(base_url=gw.url) as client:
        assert client.get("/x").status_code == 500
        gated.status = 200
        gated.gate.clear()  # the trial will hang in the upstream
        trial: list[httpx.Response] = []

        def knock() -> None:
            with httpx.Client(base_url=gw.url, timeout=15) as own:
                while not trial:
                    response = own.get("/x")
                    if not _is_circuit_open(response):
                        trial.append(response)

        knocker = threading.Thread(target=knock)
        knocker.start()
        wait_until(lambda: gated.arrived == 2, message="the trial request to reach the upstream")
        during = [client.get("/x") for _ in range(5)]
        gated.gate.set()
        knocker.join(15)
        assert trial[0].status_code == 200
        assert client.get("/x").status_code == 200
    assert all(_is_circuit_open(response) and response.headers["retry-after"] == "1" for response in during)
    assert gated.arrived == 3


def test_a_garbage_speaking_upstream_counts_as_failing(
    manifests_dir: Path, in_process_gateway: Gateway, name: str
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"\x00\xffNOT HTTP\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        _route(manifests_dir, name, port, {"fail_max": 2, "reset_timeout": 30})
        gw = in_process_gateway(manifests=manifests_dir)
        with httpx.Client(base_url=gw.url) as client:
            first = [client.get("/x") for _ in range(2)]
            assert [response.status_code for response in first] == [502, 502]
            assert _is_circuit_open(client.get("/x"))
    finally:
        listener.close()
