"""The proxy listener's HTTP/1.1 protocol, hosted by uvicorn, over real sockets.

A small ASGI app stands in for the proxy so each protocol duty is visible: framing of
responses, pipelining, 100-continue, limits and timeouts, errors as JSON.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from gateway_core.proxy import ResponseAborted
from gateway_core.server_protocol import MAX_HEAD_BYTES, protocol_factory
from gateway_core.testing import free_port, wait_until

Message = dict[str, Any]
BIG = 64 * 1024 * 1024
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Echoes the request; a few paths misbehave on purpose."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b""
    if path != "/no-read":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    if path == "/boom":
        raise RuntimeError("app bug")
    if path == "/abort-mid-body":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise ResponseAborted("upstream went away")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(0.3)
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % BIG)]})
        for _ in range(BIG // 65536):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = json.dumps(
        {
            "method": scope["method"],
            "path": path,
            "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "body": body.decode(),
            "version": scope["http_version"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol_factory(head_timeout=1.0, write_timeout=1.0),  # type: ignore[arg-type]
        lifespan="off",
        log_config=None,
        timeout_keep_alive=2,
        ws="none",
    )
    instance = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(instance.serve(),), daemon=True)
    thread.start()
    wait_until(lambda: instance.started, message="test server start")
    yield "127.0.0.1", port
    instance.should_exit = True
    thread.join(10)
    loop.close()


def exchange(address: tuple[str, int], data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of responses with Content-Length or chunked bodies."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        if "content-length" in headers:
            size = int(headers["content-length"])
            body, raw = rest[:size], rest[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)
                body += rest[:size]
                rest = rest[size + 2 :]
                if size == 0:
                    break
            raw = rest
        else:
            body, raw = rest, b""
        found.append((status, headers, body))
    return found


def test_keep_alive_and_pipelining_answer_in_order(server: tuple[str, int]) -> None:
    requests = (
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /two?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    got = responses(exchange(server, requests))
    assert [json.loads(body)["path"] for _, _, body in got] == ["/slow", "/two", "/three"]
    assert json.loads(got[1][2]) | {} == {
        "method": "POST",
        "path": "/two",
        "raw_path": "/two",
        "query": "x=1",
        "body": "hello",
        "version": "1.1",
    }
    assert got[2][1]["connection"] == "close"


def test_chunked_request_body_and_chunked_response(server: tuple[str, int]) -> None:
    raw = exchange(
        server,
        b"POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    ((status, headers, body),) = responses(raw)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"onetwothree"


def test_head_response_has_no_body_and_connection_stays_usable(server: tuple[str, int]) -> None:
    raw = exchange(
        server, b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"content-length:" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # no body bytes between the two heads
    assert json.loads(responses(rest)[0][2])["path"] == "/g"


def test_http10_client_gets_a_close_delimited_stream(server: tuple[str, int]) -> None:
    raw = exchange(server, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"onetwothree"


def test_expect_100_continue(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"data")
        final = sock.recv(4096)
    assert json.loads(responses(final)[0][2])["body"] == "data"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
            id="length-and-chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", id="two-lengths"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", id="bad-header-name"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk-size"),
    ],
)
def test_malformed_requests_get_a_json_400_and_a_closed_connection(
    server: tuple[str, int], request_bytes: bytes
) -> None:
    ((status, headers, body),) = responses(exchange(server, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "bad_request"


def test_oversized_head_gets_431(server: tuple[str, int]) -> None:
    big = b"x" * (MAX_HEAD_BYTES + 10)
    ((status, _, body),) = responses(exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n"))
    assert status == 431
    assert json.loads(body)["error"] == "request_header_too_large"


def test_slow_request_head_gets_408(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finished
        raw = sock.recv(4096)
    assert responses(raw)[0][0] == 408
    assert time.monotonic() - started < 4


def test_idle_keep_alive_connection_is_closed(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=6) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server after the keep-alive timeout
        assert 1.5 < time.monotonic() - started < 5


def test_app_failure_before_the_response_is_a_json_500(server: tuple[str, int]) -> None:
    ((status, _, body),) = responses(exchange(server, b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert status == 500
    assert b"Traceback" not in body
    assert json.loads(body)["error"] == "internal_error"


def test_abort_after_the_response_started_cuts_the_connection(server: tuple[str, int]) -> None:
    raw = exchange(server, b"GET /abort-mid-body HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length: 10" in head.lower()
    assert body == b"12345"  # fewer bytes than declared, then the connection ends


def test_unread_request_body_closes_the_connection(server: tuple[str, int]) -> None:
    raw = exchange(server, b"POST /no-read HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
    ((status, headers, _),) = responses(raw)
    assert status == 200
    assert headers.get("connection") != "keep-alive"


def test_upgrade_request_is_answered_then_the_connection_closes(server: tuple[str, int]) -> None:
    raw = exchange(
        server, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"
    )  # a WebSocket frame: not HTTP
    ((status, headers, body),) = responses(raw)  # exchange() returning means the server closed
    assert status == 200
    assert headers["connection"] == "close"
    assert json.loads(body)["path"] == "/ws"


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(2.5)  # write_timeout is 1 s: the server gives up on us meanwhile
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass  # the server aborted: what it had written may be dropped
    assert received < BIG
