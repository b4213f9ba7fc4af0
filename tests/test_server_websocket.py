"""The proxy listener handing WebSocket handshakes to the WebSocket protocol, over real sockets.

A small ASGI app stands in for the proxy (so this checks the server, not the proxy): it
echoes on ``/echo``, refuses ``/deny`` with an HTTP 401 through the ``websocket.http.response``
extension, and records how each session ended. The last test turns it around: the gateway's
own proxy app under uvicorn's stock protocols.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gateway_core.app import create_app
from gateway_core.server_protocol import protocol_factory
from gateway_core.server_websocket import GatewayWebSocketProtocol, websocket_handshake
from gateway_core.settings import load_settings
from gateway_core.testing import free_port, ingress, path, routed_service, wait_until, write_manifests

Message = dict[str, Any]
endings: list[Message] = []
HANDSHAKE = (
    b"GET /echo?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
    if scope["type"] == "http":
        body = f"plain {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    if scope["path"] == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-why", b"no key")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            endings.append(message)
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol_factory(head_timeout=5.0, write_timeout=5.0),  # type: ignore[arg-type]
        ws=GatewayWebSocketProtocol,
        lifespan="off",
        log_config=None,
    )
    instance = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(instance.serve(),), daemon=True)
    thread.start()
    wait_until(lambda: instance.started, message="test server start")
    endings.clear()
    yield "127.0.0.1", port
    instance.should_exit = True
    thread.join(10)
    loop.close()


def client(address: tuple[str, int], target: str = "/echo") -> ClientConnection:
    connection: ClientConnection = connect(
        f"ws://{address[0]}:{address[1]}{target}", proxy=None, open_timeout=5, legacy=True
    )
    return connection


def test_a_handshake_is_served_by_the_websocket_protocol(server: tuple[str, int]) -> None:
    with client(server) as connection:
        connection.send("hello")
        assert connection.recv(timeout=5) == "hello"
        connection.send(b"\x00\x01")
        assert connection.recv(timeout=5) == b"\x00\x01"
        connection.close(4005, "done here")
    wait_until(lambda: bool(endings), message="the session's end")
    assert (endings[0]["code"], endings[0].get("reason")) == (4005, "done here")


def test_a_keep_alive_connection_upgrades_after_plain_requests(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(65536).endswith(b"plain /first")
        sock.sendall(HANDSHAKE)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 101 "), answer


def test_a_handshake_refused_in_http_gets_that_answer_and_logs_no_error(
    server: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), pytest.raises(InvalidStatus) as refused:
        client(server, "/deny")
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["x-why"] == "no key"
    assert refused.value.response.body == b"denied"
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_a_dropped_client_is_reported_as_an_abnormal_closure(server: tuple[str, int]) -> None:
    connection = client(server)
    connection.send("hi")
    assert connection.recv(timeout=5) == "hi"
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close_socket()
    wait_until(lambda: bool(endings), message="the session's end")
    assert endings[0]["code"] == 1006


def test_other_upgrades_stay_http(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(b"GET /h2 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"plain /h2")


@pytest.mark.parametrize(
    ("method", "headers", "is_handshake"),
    [
        (b"GET", [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], True),
        (b"GET", [(b"connection", b"keep-alive, upgrade"), (b"upgrade", b"WebSocket")], True),
        (b"POST", [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], False),
        (b"GET", [(b"connection", b"Upgrade"), (b"upgrade", b"h2c")], False),
        (b"GET", [(b"connection", b"keep-alive"), (b"upgrade", b"websocket")], False),
        (b"GET", [(b"connection", b"Upgrade")], False),
    ],
)
def test_what_counts_as_a_websocket_handshake(
    method: bytes, headers: list[tuple[bytes, bytes]], is_handshake: bool
) -> None:
    head = websocket_handshake(method, b"/chat?room=1", [(b"host", b"a"), *headers])
    assert (head is not None) == is_handshake
    if head is not None:
        assert head.startswith(b"GET /chat?room=1 HTTP/1.1\r\nhost: a\r\n")
        assert head.endswith(b"\r\n\r\n")


# --- the gateway's proxy app under plain uvicorn ------------------------------------------------------


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
def echo_upstream() -> Iterator[int]:
    """A ``websockets`` echo server in a thread; its port."""
    ports: list[int] = []
    stop = threading.Event()

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            ports.append(server.sockets[0].getsockname()[1])
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    wait_until(lambda: bool(ports), message="the echo upstream")
    yield ports[0]
    stop.set()
    thread.join(10)


def test_the_proxy_app_proxies_websockets_under_uvicorns_own_protocols(echo_upstream: int, tmp_path: Path) -> None:
    """The proxy is a plain ASGI app: uvicorn's httptools and WebSocket protocols serve it too."""
    write_manifests(
        tmp_path, [*routed_service("echo", echo_upstream), ingress("echo", rules=[("echo.test", [path("/", "echo")])])]
    )
    gateway = create_app(load_settings(None, {"manifests": {"dir": str(tmp_path)}, "log": {"level": "warning"}}))
    port = free_port()
    config = uvicorn.Config(
        gateway.proxy, host="127.0.0.1", port=port, http="httptools", ws="websockets-sansio", log_config=None
    )
    instance = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(instance.serve(),), daemon=True)
    thread.start()
    try:
        wait_until(lambda: instance.started and gateway.ready, message="uvicorn serving the gateway")
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        with connect(f"ws://echo.test:{port}/chat", sock=sock, proxy=None, open_timeout=5) as connection:
            connection.send("through plain uvicorn")
            assert connection.recv(timeout=5) == "through plain uvicorn"
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://nowhere.test:{port}/chat", sock=sock, proxy=None, open_timeout=5)
        assert refused.value.response.status_code == 404
    finally:
        instance.should_exit = True
        thread.join(15)
        loop.close()
