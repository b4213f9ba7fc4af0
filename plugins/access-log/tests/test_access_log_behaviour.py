"""access-log through a real gateway (in-process) and a real upstream, writing real files."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_plugin_access_log.writer import OUTPUTS

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    free_port,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)

Gateway = Callable[..., InProcessGateway]


def _serve(
    manifests_dir: Path,
    in_process_gateway: Gateway,
    port: int,
    plugins: dict[str, dict[str, Any] | None],
    *extra: dict[str, Any],
) -> InProcessGateway:
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", port),
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations(plugins)),
            *extra,
        ],
    )
    return in_process_gateway(manifests=manifests_dir)


def _entries(log: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` lines of ``log`` once they are there, parsed."""

    def written() -> bool:
        return log.exists() and log.read_text().count("\n") >= count

    wait_until(written, timeout=5, message=f"{count} access log lines in {log}")
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_proxied_request_is_logged_with_every_default_field(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    backend = upstream("api")
    gw = _serve(manifests_dir, in_process_gateway, backend.port, {"access-log": {"output": str(log)}})
    response = httpx.post(f"{gw.url}/orders/7?token=s3cret", content=b"hello", headers={"Host": "shop.test"})
    assert response.status_code == 200
    (entry,) = _entries(log, 1)
    (route,) = gw.gateway.tables.current.routes
    assert list(entry) == [
        "time",
        "client",
        "method",
        "host",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "upstream_latency_ms",
        "route",
        "ingress",
        "plugins",
        "identity",
        "error",
    ]
    assert entry["client"] == "127.0.0.1"
    assert (entry["method"], entry["host"], entry["path"]) == ("POST", "shop.test", "/orders/7")
    assert "s3cret" not in log.read_text()  # the query is not logged unless `uri` is chosen
    assert (entry["status"], entry["bytes_in"], entry["bytes_out"]) == (200, 5, len(response.content))
    assert entry["upstream"] == f"127.0.0.1:{backend.port}"
    assert 0 < entry["upstream_latency_ms"] <= entry["duration_ms"] < 5000
    assert (entry["route"], entry["ingress"]) == (route.info.id, "default/api")
    assert entry["plugins"] == ["access-log"]
    assert entry["identity"] is None
    assert entry["error"] is None


def test_a_401_from_key_auth_stops_the_plugin_list_there_and_has_no_identity(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    backend = upstream("api")
    gw = _serve(
        manifests_dir,
        in_process_gateway,
        backend.port,
        {"key-auth": {"secret": "keys"}, "access-log": {"output": str(log)}},
        secret("keys", {"alice": "alice-key"}),
    )
    assert httpx.get(f"{gw.url}/x", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{gw.url}/x", headers={"X-API-Key": "alice-key"}).status_code == 200
    refused, passed = _entries(log, 2)
    assert (refused["status"], refused["plugins"], refused["identity"]) == (401, ["key-auth"], None)
    assert (refused["upstream"], refused["upstream_latency_ms"], refused["error"]) == (None, None, None)
    assert (passed["status"], passed["plugins"], passed["identity"]) == (200, ["key-auth", "access-log"], "alice")
    assert "alice-key" not in log.read_text()


def test_an_unreachable_upstream_is_logged_as_a_502_with_its_error_code(
    manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    closed = free_port()
    gw = _serve(manifests_dir, in_process_gateway, closed, {"access-log": {"output": str(log)}})
    response = httpx.get(f"{gw.url}/x")
    assert response.status_code == 502
    (entry,) = _entries(log, 1)
    assert (entry["status"], entry["error"]) == (502, "upstream_connect_failed")
    assert entry["upstream"] == f"127.0.0.1:{closed}"
    assert entry["upstream_latency_ms"] is None
    assert entry["bytes_out"] == len(response.content)


def test_chosen_fields_in_their_order_with_the_query_and_client_headers(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.jsonl"
    config = {
        "output": str(log),
        "fields": ["status", "uri", "request_id", "user_agent", "referer", "time"],
        "headers": ["X-Tenant", "X-Absent"],
        "request_id_header": "X-Trace",
    }
    gw = _serve(manifests_dir, in_process_gateway, upstream("api").port, {"access-log": config})
    sent = httpx.get(
        f"{gw.url}/a/b?q=1&r=%2F",
        headers=[
            ("X-Trace", "t-42"),
            ("User-Agent", "probe/1"),
            ("X-Tenant", "red"),
            ("X-Tenant", "blue"),
            ("Authorization", "Bearer hidden"),
        ],
    )
    assert sent.status_code == 200
    (entry,) = _entries(log, 1)
    assert list(entry) == ["status", "uri", "request_id", "user_agent", "referer", "time", "headers"]
    assert (entry["status"], entry["uri"], entry["request_id"]) == (200, "/a/b?q=1&r=%2F", "t-42")
    assert (entry["user_agent"], entry["referer"]) == ("probe/1", None)
    assert entry["headers"] == {"x-tenant": "red, blue", "x-absent": None}
    assert "hidden" not in log.read_text()


def test_the_id_request_id_kept_or_generated_is_logged_instead_of_the_client_header(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    backend = upstream("api")
    plugins: dict[str, dict[str, Any] | None] = {
        "request-id": None,
        "access-log": {"output": str(log), "fields": ["path", "request_id"]},
    }
    gw = _serve(manifests_dir, in_process_gateway, backend.port, plugins)
    assert httpx.get(f"{gw.url}/kept", headers={"X-Request-ID": "r-1"}).status_code == 200
    assert httpx.get(f"{gw.url}/replaced", headers={"X-Request-ID": "not valid"}).status_code == 200
    assert httpx.get(f"{gw.url}/generated").status_code == 200
    kept, replaced, generated = _entries(log, 3)
    sent = [request.headers["x-request-id"] for request in backend.requests]
    assert kept["request_id"] == sent[0] == "r-1"
    assert replaced["request_id"] == sent[1] != "not valid"
    assert generated["request_id"] == sent[2]
    assert None not in (replaced["request_id"], generated["request_id"])


def test_a_rotated_file_is_followed_by_a_new_one(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    gw = _serve(
        manifests_dir,
        in_process_gateway,
        upstream("api").port,
        {"access-log": {"output": str(log), "fields": ["path"]}},
    )
    httpx.get(f"{gw.url}/before")
    assert _entries(log, 1) == [{"path": "/before"}]
    log.rename(tmp_path / "access.log.1")
    httpx.get(f"{gw.url}/after")
    assert _entries(log, 1) == [{"path": "/after"}]
    assert (tmp_path / "access.log.1").read_text() == '{"path":"/before"}\n'


def test_a_full_queue_drops_lines_without_formatting_or_blocking_requests(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    fifo = tmp_path / "access.log"
    os.mkfifo(fifo)  # no reader yet: the writer waits to open it and the queue fills up
    config = {"output": str(fifo), "queue_size": 2, "fields": ["path"]}
    gw = _serve(manifests_dir, in_process_gateway, upstream("api").port, {"access-log": config})
    output = OUTPUTS.get(str(fifo), 1)
    with httpx.Client(base_url=gw.url) as client:
        statuses = [client.get(f"/r{index}").status_code for index in range(6)]
    assert statuses == [200] * 6  # requests never wait for the log
    assert (len(output.queue), output.dropped) == (2, 4)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = bytearray()

    def two_lines() -> bool:
        with contextlib.suppress(BlockingIOError):
            received.extend(os.read(reader, 65536))
        return received.count(b"\n") == 2

    try:
        wait_until(two_lines, timeout=5, message="the queued lines")
    finally:
        os.close(reader)
    assert received.decode().splitlines() == ['{"path":"/r0"}', '{"path":"/r1"}']


def _raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            b"GET /q%22uote/back%5Cslash/%00nul/%0Anewline/%1B[31m HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            {"path": '/q"uote/back\\slash/\x00nul/\nnewline/\x1b[31m'},
        ),
        (
            b"GET /bad-utf8/%FF%FE%C3%28/caf%C3%A9 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            {"path": "/bad-utf8/\ufffd\ufffd\ufffd(/caf\u00e9"},
        ),
        (
            b'GET /h HTTP/1.1\r\nHost: a\r\nUser-Agent: "}\\u0000\\ \xff\x80\tz\r\nX-Request-ID: {"a":1}\r\n'
            b"X-Tenant: \xc3\xa9\xff\r\nReferer: %s%d%%\r\nConnection: close\r\n\r\n",
            {
                "user_agent": '"}\\u0000\\ \xff\x80\tz',
                "request_id": '{"a":1}',
                "referer": "%s%d%%",
                "headers": {"x-tenant": "\xc3\xa9\xff"},
            },
        ),
    ],
    ids=["escapes", "invalid-utf8", "headers"],
)
def test_hostile_requests_give_valid_json_lines(
    head: bytes,
    expected: dict[str, Any],
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Gateway,
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    config = {
        "output": str(log),
        "fields": ["path", "uri", "user_agent", "referer", "request_id", "status"],
        "headers": ["X-Tenant"],
    }
    gw = _serve(manifests_dir, in_process_gateway, upstream("api").port, {"access-log": config})
    answer = _raw_request(gw.port, head)
    assert answer.startswith(b"HTTP/1.1 200 ")
    (entry,) = _entries(log, 1)
    assert entry["status"] == 200
    assert entry["uri"].encode("latin-1") == head.split(b" ")[1]
    assert {name: entry[name] for name in expected} == expected
    text = log.read_text()
    assert text.count("\n") == 1
    text.encode("ascii")


def test_raw_non_ascii_bytes_in_the_target_are_refused_before_routing_and_not_logged(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    gw = _serve(manifests_dir, in_process_gateway, upstream("api").port, {"access-log": {"output": str(log)}})
    answer = _raw_request(gw.port, b"GET /raw/\xff\xfe?x=\xc3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert httpx.get(f"{gw.url}/next").status_code == 200
    (entry,) = _entries(log, 1)  # only the second request ran the route's plugins
    assert entry["path"] == "/next"
