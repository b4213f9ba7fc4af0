"""request-id through a real in-process gateway and real upstreams: kept, generated, echoed, logged."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    secret,
    wait_until,
    write_manifests,
)

Gateway = Callable[..., InProcessGateway]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _serve(
    manifests_dir: Path,
    in_process_gateway: Gateway,
    upstream: RecordingUpstream,
    plugins: dict[str, dict[str, Any] | None],
    *extra: dict[str, Any],
) -> InProcessGateway:
    write_manifests(
        manifests_dir,
        [
            *routed_service("api", upstream.port),
            ingress("api", rules=[(None, [path("/", "api")])], annotations=plugin_annotations(plugins)),
            *extra,
        ],
    )
    return in_process_gateway(manifests=manifests_dir)


def _raw_get(gw: InProcessGateway, header_lines: bytes) -> tuple[int, dict[str, str]]:
    """Send a GET with raw header lines (bytes httpx would refuse); the status and headers back."""
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /raw HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n" + header_lines + b"\r\n")
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


@pytest.fixture
def api(upstream: Callable[..., RecordingUpstream]) -> RecordingUpstream:
    return upstream("api")


def test_an_id_is_generated_when_absent_and_is_the_same_upstream_and_on_the_response(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": None})
    first = httpx.get(f"{gw.url}/a")
    second = httpx.get(f"{gw.url}/b")
    assert first.status_code == second.status_code == 200
    ids = [request.headers["x-request-id"] for request in api.requests]
    assert all(UUID4.match(value) for value in ids)
    assert ids[0] != ids[1]
    assert [first.headers["x-request-id"], second.headers["x-request-id"]] == ids


def test_a_valid_client_id_is_propagated_unchanged(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": None})
    client_id = "req-2026/05:01_abc.DEF~" + "x" * 177  # 200 visible ASCII characters: the limit
    response = httpx.get(f"{gw.url}/a", headers={"X-Request-ID": client_id})
    assert response.headers["x-request-id"] == client_id
    assert api.requests[-1].header_list.count(("x-request-id", client_id)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        "x" * 201,  # too long
        "has space",
        "tab\there",
        "caf\u00e9",  # not ASCII
        "",
    ],
)
def test_an_invalid_client_id_is_replaced(
    bad: str, api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": None})
    response = httpx.get(f"{gw.url}/a", headers={b"X-Request-ID": bad.encode("latin-1")})
    assert response.status_code == 200
    sent = [value for name, value in api.requests[-1].header_list if name == "x-request-id"]
    assert len(sent) == 1
    assert UUID4.match(sent[0])
    assert response.headers["x-request-id"] == sent[0]


@pytest.mark.parametrize(
    ("hostile", "parser_may_refuse"),
    [
        (b"X-Request-ID: a\x01b\r\n", True),  # a control character
        (b"X-Request-ID: a\x7fb\r\n", True),  # DEL
        (b"X-Request-ID: \xff\xfe\r\n", False),  # raw non-ASCII bytes
        (b"X-Request-ID: one\r\nX-Request-ID: two\r\n", False),  # ambiguous
        (b"X-Request-ID: " + b"%" * 5000 + b"\r\n", False),
    ],
)
def test_hostile_ids_never_reach_the_upstream_nor_cause_a_500(
    hostile: bytes,
    parser_may_refuse: bool,
    api: RecordingUpstream,
    manifests_dir: Path,
    in_process_gateway: Gateway,
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": None})
    status, headers = _raw_get(gw, hostile)
    if parser_may_refuse and status == 400:  # the gateway's HTTP parser refused it before any plugin
        assert api.requests == []
        return
    assert status == 200
    sent = [value for name, value in api.requests[-1].header_list if name == "x-request-id"]
    assert len(sent) == 1
    assert UUID4.match(sent[0])
    assert headers["x-request-id"] == sent[0]


def test_trust_incoming_false_always_generates(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": {"trust_incoming": False}})
    response = httpx.get(f"{gw.url}/a", headers={"X-Request-ID": "client-chosen"})
    seen = api.requests[-1].headers["x-request-id"]
    assert UUID4.match(seen)
    assert response.headers["x-request-id"] == seen


def test_max_length_bounds_the_kept_client_id(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": {"max_length": 8}})
    assert httpx.get(f"{gw.url}/a", headers={"X-Request-ID": "12345678"}).headers["x-request-id"] == "12345678"
    replaced = httpx.get(f"{gw.url}/a", headers={"X-Request-ID": "123456789"}).headers["x-request-id"]
    assert UUID4.match(replaced)


def test_a_custom_header_and_no_response_echo(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    config = {"header": "X-Correlation-ID", "response_header": False}
    gw = _serve(manifests_dir, in_process_gateway, api, {"request-id": config})
    response = httpx.get(f"{gw.url}/a", headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "untouched"})
    assert api.requests[-1].headers["x-correlation-id"] == "corr-1"
    assert api.requests[-1].headers["x-request-id"] == "untouched"  # another header: not ours
    assert "x-correlation-id" not in response.headers
    generated = httpx.get(f"{gw.url}/a")
    assert UUID4.match(api.requests[-1].headers["x-correlation-id"])
    assert "x-correlation-id" not in generated.headers


def test_an_id_the_upstream_answers_with_is_left_as_is(
    upstream: Callable[..., RecordingUpstream], manifests_dir: Path, in_process_gateway: Gateway
) -> None:
    own = upstream("own", extra_headers={"X-Request-ID": "upstream-made"})
    gw = _serve(manifests_dir, in_process_gateway, own, {"request-id": None})
    response = httpx.get(f"{gw.url}/a", headers={"X-Request-ID": "client-1"})
    assert own.requests[-1].headers["x-request-id"] == "client-1"
    assert response.headers.get_list("x-request-id") == ["upstream-made"]


def test_the_access_log_line_carries_the_generated_id_even_for_a_401(
    api: RecordingUpstream, manifests_dir: Path, in_process_gateway: Gateway, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    plugins: dict[str, dict[str, Any] | None] = {
        "request-id": None,
        "key-auth": {"secret": "keys"},
        "access-log": {"output": str(log), "fields": ["status", "plugins", "request_id"]},
    }
    gw = _serve(manifests_dir, in_process_gateway, api, plugins, secret("keys", {"alice": "alice-key"}))
    refused = httpx.get(f"{gw.url}/a")
    passed = httpx.get(f"{gw.url}/a", headers={"X-API-Key": "alice-key"})
    kept = httpx.get(f"{gw.url}/a", headers={"X-API-Key": "alice-key", "X-Request-ID": "client-7"})
    assert (refused.status_code, passed.status_code, kept.status_code) == (401, 200, 200)
    wait_until(lambda: log.exists() and log.read_text().count("\n") >= 3, timeout=5, message="three log lines")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert (lines[0]["status"], lines[0]["plugins"]) == (401, ["request-id", "key-auth"])
    assert UUID4.match(lines[0]["request_id"])
    assert refused.headers["x-request-id"] == lines[0]["request_id"]  # the gateway's own 401 carries it too
    assert lines[1]["request_id"] == api.requests[0].headers["x-request-id"] == passed.headers["x-request-id"]
    assert lines[2]["request_id"] == "client-7"
