"""rewrite through a real gateway and real upstreams: what path each upstream receives."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway_core.testing import (
    InProcessGateway,
    RecordingUpstream,
    ingress,
    path,
    plugin_annotations,
    routed_service,
    write_manifests,
)

RULES: dict[str, dict[str, Any]] = {
    "strip.test": {"strip_prefix": "/api"},
    "replace.test": {"replace_prefix": {"from": "/api", "to": "/internal"}, "x_original_uri": True},
    "regex.test": {"regex": r"^/users/(\d+)/profile$", "replacement": "/profile?id=$1"},
    "files.test": {"regex": r"^/files/(?P<name>.+)$", "replacement": "/store/${name}?copy=${name}"},
    "root.test": {"replace_prefix": {"from": "/", "to": "/internal"}},
    "slash.test": {"regex": r"^/a(.*)$", "replacement": "/$1"},
    "dots.test": {"regex": r"^/v(.*)$", "replacement": "/store/$1"},
    "short.test": {"regex": r"(?s)^/(.*)$", "replacement": "/x/$1", "max_path_length": 64},
}


def raw_get(url: str, target: str, host: str) -> int:
    """Send ``target`` on the request line exactly as given; return the status code."""
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = connection.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture
def gateway(
    upstream: Callable[..., RecordingUpstream],
    manifests_dir: Path,
    in_process_gateway: Callable[..., InProcessGateway],
) -> tuple[InProcessGateway, RecordingUpstream]:
    backend = upstream("api")
    objects: list[dict[str, Any]] = [*routed_service("api", backend.port)]
    for index, (host, config) in enumerate(RULES.items()):
        annotations = plugin_annotations({"rewrite": config})
        objects.append(ingress(f"rule-{index}", rules=[(host, [path("/", "api")])], annotations=annotations))
    write_manifests(manifests_dir, objects)
    return in_process_gateway(manifests=manifests_dir), backend


def _seen(gw: InProcessGateway, backend: RecordingUpstream, host: str, target: str) -> str:
    status = raw_get(gw.url, target, host)
    assert status == 200, (host, target, status)
    return backend.requests[-1].path


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/v1/x", "/v1/x"),
        ("/api", "/"),
        ("/api/", "/"),
        ("/api?a=1&b=%2F", "/?a=1&b=%2F"),
        ("/api//v1", "/v1"),
        ("/apix/v1", "/apix/v1"),  # whole segments only: unchanged
        ("/other", "/other"),
        ("/%61pi/v1", "/v1"),  # the prefix is matched on the decoded segment
        ("/api/a%2Fb/my%20file", "/a%2Fb/my%20file"),  # the rest goes byte for byte
    ],
)
def test_strip_prefix(gateway: tuple[InProcessGateway, RecordingUpstream], target: str, expected: str) -> None:
    assert _seen(*gateway, "strip.test", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/v1?q=1", "/internal/v1?q=1"),
        ("/api", "/internal"),
        ("/api/", "/internal/"),
        ("/api%2Fv1", "/api%2Fv1"),  # an encoded slash is not a segment boundary: unchanged
        ("/public", "/public"),
    ],
)
def test_replace_prefix(gateway: tuple[InProcessGateway, RecordingUpstream], target: str, expected: str) -> None:
    assert _seen(*gateway, "replace.test", target) == expected


@pytest.mark.parametrize(
    ("host", "target", "expected"),
    [
        ("root.test", "/v1?a=1", "/internal/v1?a=1"),
        ("root.test", "/", "/internal/"),
        ("slash.test", "/a/b", "/b"),  # "/" + "/b": never a leading "//"
        ("slash.test", "/a", "/"),
    ],
)
def test_root_prefix_and_leading_slashes(
    gateway: tuple[InProcessGateway, RecordingUpstream], host: str, target: str, expected: str
) -> None:
    assert _seen(*gateway, host, target) == expected


def test_the_original_uri_is_sent_and_a_forged_one_replaced(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    headers = {"Host": "replace.test", "X-Original-URI": "/forged"}
    assert httpx.get(f"{gw.url}/api/v1?q=%20", headers=headers).status_code == 200
    seen = backend.requests[-1]
    assert seen.path == "/internal/v1?q=%20"
    assert [value for name, value in seen.header_list if name == "x-original-uri"] == ["/api/v1?q=%20"]
    assert httpx.get(f"{gw.url}/api", headers={"Host": "regex.test", "X-Original-URI": "/kept"}).status_code == 200
    assert backend.requests[-1].headers["x-original-uri"] == "/kept"  # off by default: untouched


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/users/42/profile", "/profile?id=42"),
        ("/users/42/profile?lang=en&x=%26", "/profile?id=42&lang=en&x=%26"),
        ("/users/42/profile?", "/profile?id=42"),
        ("/users/abc/profile", "/users/abc/profile"),  # no match: unchanged
        ("/users/42/profile/more?a=1", "/users/42/profile/more?a=1"),
    ],
)
def test_regex_with_captures_and_query_merge(
    gateway: tuple[InProcessGateway, RecordingUpstream], target: str, expected: str
) -> None:
    assert _seen(*gateway, "regex.test", target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/files/my%20doc.txt", "/store/my%20doc.txt?copy=my%20doc.txt"),
        ("/files/a%2Fb", "/store/a%2Fb?copy=a%2Fb"),  # %2F stays encoded in the path
        ("/files/caf%C3%A9", "/store/caf%C3%A9?copy=caf%C3%A9"),
        ("/files/%FF%FE", "/store/%FF%FE?copy=%FF%FE"),  # not UTF-8: bytes kept
        ("/files/100%25", "/store/100%25?copy=100%25"),
        ("/files/%7Euser", "/store/~user?copy=~user"),  # unreserved escapes are decoded
    ],
)
def test_regex_on_encoded_characters(
    gateway: tuple[InProcessGateway, RecordingUpstream], target: str, expected: str
) -> None:
    assert _seen(*gateway, "files.test", target) == expected


def test_a_capture_cannot_add_query_parameters_or_segments(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    seen = _seen(gw, backend, "files.test", "/files/x&admin=1+%3Fy%23z?orig=1")
    assert seen == "/store/x&admin=1+%3Fy%23z?copy=x%26admin%3D1%2B%3Fy%23z&orig=1"


def test_hostile_paths_are_refused_with_json_or_forwarded_encoded(
    gateway: tuple[InProcessGateway, RecordingUpstream],
) -> None:
    gw, backend = gateway
    before = len(backend.requests)
    long_path = "/" + "a" * 100
    response = httpx.get(f"{gw.url}{long_path}", headers={"Host": "short.test"})
    assert (response.status_code, response.json()["error"]) == (414, "uri_too_long")
    assert raw_get(gw.url, "/%2E%2E", "short.test") == 200  # resolved by the gateway before routing
    assert backend.requests[-1].path == "/x/"
    assert raw_get(gw.url, "/files/..", "files.test") == 200  # normalised to /files/: no match
    for target in ("/v..", "/v%2E%2E", "/v.?a=1"):
        refused = httpx.get(f"{gw.url}{target}", headers={"Host": "dots.test"})
        assert (refused.status_code, refused.json()["error"]) == (400, "bad_request")
        assert "segment" in refused.json()["message"]
    assert len(backend.requests) == before + 2
    assert _seen(gw, backend, "dots.test", "/v...") == "/store/..."  # not a dot segment
    for target in ("/%00", "/%0D%0AX-Evil:%201", "/%FF"):
        assert raw_get(gw.url, target, "short.test") == 200
        assert backend.requests[-1].path == "/x" + target
